// @ts-check
import { useEffect, useState } from "preact/hooks";
import { html } from "htm/preact";

const STRATEGIES = [
  ["auto", "auto: the newest messages that fit"],
  ["summarize", "summarize: plus a running summary of older ones"],
  ["strict", "strict: refuse a turn that does not fit"],
];

/**
 * Start a conversation: a served model, a system prompt, sampling params and the context strategy.
 * @param {{ api: import("./api.js").Api, onCreated: () => void }} props
 */
export function NewConversation({ api, onCreated }) {
  const [models, setModels] = useState(/** @type {string[]} */ ([]));
  const [error, setError] = useState(/** @type {string | null} */ (null));
  const [creating, setCreating] = useState(false);

  useEffect(() => {
    api
      .get("/models")
      .then((list) => setModels(list.data.map((/** @type {{id: string}} */ m) => m.id)))
      .catch((err) => setError(err.message));
  }, [api]);

  /** @param {SubmitEvent} e */
  const submit = async (e) => {
    e.preventDefault();
    const form = new FormData(/** @type {HTMLFormElement} */ (e.currentTarget));
    const text = (/** @type {string} */ name) => String(form.get(name) ?? "").trim();
    /** @type {Record<string, unknown>} */
    let params = {};
    try {
      const other = text("params");
      if (other) params = JSON.parse(other);
      if (typeof params !== "object" || params === null || Array.isArray(params)) throw new Error("not an object");
    } catch {
      return setError('Other params must be a JSON object, e.g. {"top_p": 0.9}.');
    }
    if (text("temperature")) params.temperature = Number(text("temperature"));
    if (text("max_tokens")) params.max_tokens = Number(text("max_tokens"));
    /** @type {Record<string, unknown>} */
    const body = { model: text("model"), context_strategy: text("context_strategy"), params };
    if (text("title")) body.title = text("title");
    if (text("system")) body.system = text("system");
    setCreating(true);
    setError(null);
    try {
      const created = await api.post("/conversations", body);
      onCreated();
      location.hash = `#/c/${created.id}`;
    } catch (err) {
      const e = /** @type {import("./api.js").ApiError} */ (err);
      setError(e.param ? `${e.message} (${e.param})` : e.message);
    } finally {
      setCreating(false);
    }
  };

  return html`<section class="new-conversation">
    <h1>New conversation</h1>
    <form aria-label="New conversation" onSubmit=${submit}>
      <label for="nc-model">Model</label>
      <select id="nc-model" name="model" required>
        ${models.map((m) => html`<option key=${m} value=${m}>${m}</option>`)}
      </select>
      <label for="nc-title">Title</label>
      <input id="nc-title" name="title" maxlength="500" />
      <label for="nc-system">System prompt</label>
      <textarea id="nc-system" name="system" rows="3"></textarea>
      <label for="nc-strategy">Context strategy</label>
      <select id="nc-strategy" name="context_strategy">
        ${STRATEGIES.map(([value, label]) => html`<option key=${value} value=${value}>${label}</option>`)}
      </select>
      <div class="row">
        <div>
          <label for="nc-temperature">Temperature</label>
          <input id="nc-temperature" name="temperature" type="number" min="0" max="2" step="0.1" inputmode="decimal" />
        </div>
        <div>
          <label for="nc-max-tokens">Max tokens</label>
          <input id="nc-max-tokens" name="max_tokens" type="number" min="1" step="1" inputmode="numeric" />
        </div>
      </div>
      <label for="nc-params">Other params (JSON)</label>
      <textarea id="nc-params" name="params" rows="3" spellcheck="false" placeholder='{"top_p": 0.9}'></textarea>
      ${error && html`<p role="alert" class="error">${error}</p>`}
      <button type="submit" class="primary" disabled=${creating || models.length === 0}>Create conversation</button>
    </form>
  </section>`;
}
