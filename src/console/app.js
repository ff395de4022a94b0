// @ts-check
import { render } from "preact";
import { useCallback, useEffect, useMemo, useState } from "preact/hooks";
import { html } from "htm/preact";
import { createApi, ApiError } from "./api.js";
import { clearSession, saveApiKey, savedApiKey } from "./session.js";
import { ConversationList } from "./conversation-list.js";
import { NewConversation } from "./new-conversation.js";
import { ConversationView } from "./conversation-view.js";

export const KEY_REJECTED = "This API key was not accepted: it is wrong, or it has been revoked.";

/** @typedef {{ name: "home" } | { name: "new" } | { name: "conversation", id: string }} Route */

/** @returns {Route} */
function routeOf(hash = location.hash) {
  const conversation = /^#\/c\/([A-Za-z0-9_-]+)$/.exec(hash);
  if (conversation) return { name: "conversation", id: /** @type {string} */ (conversation[1]) };
  if (hash === "#/new") return { name: "new" };
  return { name: "home" };
}

function useRoute() {
  const [route, setRoute] = useState(routeOf());
  useEffect(() => {
    const changed = () => setRoute(routeOf());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}

/** @param {{ message: string | null, onSignedIn: (key: string) => void }} props */
function SignIn({ message, onSignedIn }) {
  const [error, setError] = useState(message);
  const [checking, setChecking] = useState(false);
  /** @param {SubmitEvent} e */
  const submit = async (e) => {
    e.preventDefault();
    const form = /** @type {HTMLFormElement} */ (e.currentTarget);
    const key = String(new FormData(form).get("apiKey") ?? "").trim();
    if (!key) return setError("Enter an API key.");
    setChecking(true);
    setError(null);
    try {
      // Any call with the key tells whether it is accepted; this one shows nothing of the tenant.
      await createApi(key, () => {}).get("/conversations", { limit: 1 });
      onSignedIn(key);
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? KEY_REJECTED : `Parley did not answer: ${/** @type {Error} */ (err).message}`);
    } finally {
      setChecking(false);
    }
  };
  return html`<main class="sign-in">
    <h1>Parley console</h1>
    <form aria-label="Sign in" onSubmit=${submit}>
      <label for="api-key">API key</label>
      <input id="api-key" name="apiKey" type="password" autocomplete="off" spellcheck="false" required autofocus />
      <p class="hint">Kept in this tab only (its session storage) and sent to this server as a bearer token.</p>
      ${error && html`<p role="alert" class="error">${error}</p>`}
      <button type="submit" disabled=${checking}>${checking ? "Checking…" : "Sign in"}</button>
    </form>
  </main>`;
}

function App() {
  const [apiKey, setApiKey] = useState(savedApiKey());
  const [signInMessage, setSignInMessage] = useState(/** @type {string | null} */ (null));
  const [listVersion, setListVersion] = useState(0);
  const route = useRoute();

  const signOut = useCallback((/** @type {string | null} */ message) => {
    clearSession();
    setSignInMessage(message);
    setApiKey(null);
  }, []);
  const api = useMemo(() => (apiKey ? createApi(apiKey, () => signOut(KEY_REJECTED)) : null), [apiKey, signOut]);
  const listChanged = useCallback(() => setListVersion((v) => v + 1), []);

  if (!api) {
    return html`<${SignIn}
      message=${signInMessage}
      onSignedIn=${(/** @type {string} */ key) => {
        saveApiKey(key);
        setSignInMessage(null);
        setApiKey(key);
      }}
    />`;
  }
  const selected = route.name === "conversation" ? route.id : null;
  return html`<div class=${`layout route-${route.name}`}>
    <header class="top">
      <a class="brand" href="#/">Parley console</a>
      <a href="/docs">API reference</a>
      <button type="button" onClick=${() => signOut(null)}>Sign out</button>
    </header>
    <${ConversationList} api=${api} selected=${selected} version=${listVersion} />
    <main class="main">
      ${route.name === "new"
        ? html`<${NewConversation} api=${api} onCreated=${listChanged} />`
        : route.name === "conversation"
          ? html`<${ConversationView} key=${route.id} api=${api} id=${route.id} onChanged=${listChanged} />`
          : html`<section class="welcome"><h1>Conversations</h1><p>Pick a conversation, or <a href="#/new">start a new one</a>.</p></section>`}
    </main>
  </div>`;
}

render(html`<${App} />`, /** @type {HTMLElement} */ (document.getElementById("app")));
