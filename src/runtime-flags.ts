/**
 * Node flags every Parley process runs with (package.json's start and dev
 * scripts spell the same). Node 24's young generation grows to ~130 MB while
 * the dependencies load and stays there; 16 MB semi-spaces keep an idle
 * process near 200 MB instead of 300 MB.
 */
export const PARLEY_NODE_FLAGS = ["--max-semi-space-size=16"];
