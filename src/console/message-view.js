// @ts-check
import { html } from "htm/preact";
import { ROLE_NAMES, dateTime } from "./format.js";
import { isInFlight } from "./reply-stream.js";

/** @typedef {Record<string, any>} Message */

/** The text of a message: its content, or the text parts of its content parts. @param {Message} m */
function contentView(m) {
  if (!Array.isArray(m.content_parts)) return html`<div class="content" data-testid="message-content">${m.content ?? ""}</div>`;
  let image = 0;
  return html`<div class="content" data-testid="message-content">
    ${m.content_parts.map((/** @type {Record<string, any>} */ part, /** @type {number} */ i) => {
      if (part.type === "text") return html`<p key=${i}>${part.text}</p>`;
      if (part.type === "image_url") {
        image++;
        const url = typeof part.image_url === "string" ? part.image_url : part.image_url?.url;
        return html`<figure key=${i}>
          <img src=${url} alt=${`Image ${image}`} loading="lazy" referrerpolicy="no-referrer" />
          ${part.image_url?.detail && html`<figcaption>detail: ${part.image_url.detail}</figcaption>`}
        </figure>`;
      }
      return html`<pre key=${i} class="part">${JSON.stringify(part, null, 2)}</pre>`;
    })}
  </div>`;
}

/** @param {Message} m */
function toolCallsView(m) {
  if (!Array.isArray(m.tool_calls) || m.tool_calls.length === 0) return null;
  return html`<ul class="tool-calls" aria-label="Tool calls">
    ${m.tool_calls.map(
      (/** @type {Record<string, any>} */ call, /** @type {number} */ i) => html`<li key=${call.id || i} data-testid="tool-call">
        <span class="tool-name">Calls <code>${call.function?.name ?? call.type}</code></span>
        <span class="tool-id">${call.id}</span>
        <pre>${prettyJson(call.function?.arguments ?? "")}</pre>
      </li>`,
    )}
  </ul>`;
}

/** Arguments as sent, indented when they are JSON (they may be a fragment while streaming). @param {string} text */
function prettyJson(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

/** @param {Message} m */
function detailsView(m) {
  /** @type {[string, unknown][]} */
  const rows = [
    ["Id", m.id],
    ["Status", m.status],
    ["Tokens", m.tokens],
  ];
  if (m.role === "assistant") {
    rows.push(["Model", m.model], ["Finish reason", m.finish_reason]);
    if (m.usage) rows.push(["Usage", `${m.usage.prompt_tokens} prompt + ${m.usage.completion_tokens} completion = ${m.usage.total_tokens} tokens`]);
    rows.push(["Time to first token", typeof m.ttft_ms === "number" ? `${m.ttft_ms} ms` : null]);
    if (m.context) rows.push(["Context sent", `${m.context.messages} messages, ${m.context.tokens} tokens`]);
  }
  if (m.name) rows.push(["Name", m.name]);
  rows.push(["Created", dateTime(m.created_at)], ["Completed", dateTime(m.completed_at)]);
  if (m.metadata && Object.keys(m.metadata).length) rows.push(["Metadata", JSON.stringify(m.metadata)]);
  return html`<details class="details">
    <summary>Details</summary>
    <dl>
      ${rows
        .filter(([, v]) => v !== null && v !== undefined && v !== "")
        .map(([k, v]) => html`<div key=${k}><dt>${k}</dt><dd>${String(v)}</dd></div>`)}
    </dl>
  </details>`;
}

/**
 * One message of the history, as what it is: text or parts (images), reasoning, tool calls, a tool's
 * result, an error; its details on demand; and what can be done from it.
 * @param {{ message: Message, isLast: boolean, onFork: (m: Message) => void, onRegenerate: (m: Message) => void, busy: boolean }} props
 */
export function MessageView({ message: m, isLast, onFork, onRegenerate, busy }) {
  const live = isInFlight(m);
  return html`<li class=${`message role-${m.role} status-${m.status}`} data-message-id=${m.id} data-role=${m.role} data-status=${m.status} data-seq=${m.seq}>
    <article aria-label=${`${ROLE_NAMES[m.role] ?? m.role} message ${m.seq ?? ""}`}>
      <header>
        <span class="role">${ROLE_NAMES[m.role] ?? m.role}</span>
        ${m.role === "assistant" && m.model && html`<span class="model">${m.model}</span>`}
        ${m.status !== "completed" && html`<span class=${`badge ${m.status}`}>${live ? "generating…" : m.status}</span>`}
        ${typeof m.tokens === "number" && !live && html`<span class="tokens">${m.tokens} tokens</span>`}
      </header>
      ${m.role === "tool" && html`<p class="tool-result">Result of <code>${m.tool_call_id}</code></p>`}
      ${m.reasoning && html`<details class="reasoning"><summary>Reasoning</summary><div>${m.reasoning}</div></details>`}
      ${contentView(m)}
      ${toolCallsView(m)}
      ${m.error && html`<p class="error">${m.error.message}${m.error.code ? ` (${m.error.code})` : ""}</p>`}
      ${detailsView(m)}
      <div class="actions">
        ${!live && html`<button type="button" onClick=${() => onFork(m)} disabled=${busy}>Fork from here</button>`}
        ${isLast && m.role === "assistant" && !live && html`<button type="button" onClick=${() => onRegenerate(m)} disabled=${busy}>Regenerate</button>`}
      </div>
    </article>
  </li>`;
}
