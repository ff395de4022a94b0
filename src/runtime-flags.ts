/**
 * Node flags every Parley process runs with (package.json's start and dev
 * scripts spell the same).
 *
 * --max-semi-space-size=16: Node 24's young generation grows to ~130 MB while
 * the dependencies load and stays there; 16 MB semi-spaces keep an idle
 * process near 200 MB instead of 300 MB.
 *
 * --heap-growing-percent=30: after each full GC, V8 lets the old generation
 * grow to 1.3× what survived (plus the young generation's size) before the
 * next. Left to itself it picks up to 4× on a machine with this much memory:
 * a reply stream's objects live seconds, so they are promoted and die old,
 * and with 1,000 streams the API's and the worker's old space filled with
 * ~150 MB of such garbage (peak RSS ~340 MB) before one full GC. 1.3 is
 * V8's own factor for memory-constrained heaps. It bounds the garbage, not
 * the heap: unlike --max-old-space-size, no limit is set past which the
 * process dies. API/worker peak RSS on a shared 2-core machine, `npm run
 * bench -- --only ttft,throughput,streams`: 344/345 and 371/389 MB without it
 * (the throughput scenario set most of it), 238/254 MB with it; `--only
 * streams`: 354/378 without, 283/310 with. Full GCs ran ~3-4× as often;
 * their total time and the CPU per turn did not grow.
 */
export const PARLEY_NODE_FLAGS = ["--max-semi-space-size=16", "--heap-growing-percent=30"];
