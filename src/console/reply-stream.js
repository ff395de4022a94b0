// @ts-check
import { saveReply } from "./session.js";

/** @typedef {Record<string, any>} Message */
/** @typedef {import("./api.js").StreamEvent} StreamEvent */

const END_EVENTS = new Set(["message.completed", "message.failed", "message.cancelled"]);

/** @param {Message} m */
export const isInFlight = (m) => m.status === "queued" || m.status === "in_progress";

/**
 * A delta applied to a reply, as OpenAI streams them: text and reasoning are appended, tool calls are
 * assembled by their index (the id and name come once, the arguments in fragments).
 * @param {Message} reply @param {Record<string, any>} delta
 * @returns {Message}
 */
export function applyDelta(reply, delta) {
  /** @type {Message} */
  const next = { ...reply, status: "in_progress" };
  if (typeof delta.content === "string") next.content = (next.content ?? "") + delta.content;
  if (typeof delta.reasoning === "string") next.reasoning = (next.reasoning ?? "") + delta.reasoning;
  if (Array.isArray(delta.tool_calls)) {
    const calls = [...(next.tool_calls ?? [])];
    for (const part of delta.tool_calls) {
      const i = typeof part.index === "number" ? part.index : calls.length;
      const had = calls[i] ?? { id: "", type: "function", function: { name: "", arguments: "" } };
      calls[i] = {
        ...had,
        id: part.id ?? had.id,
        function: {
          name: had.function.name + (part.function?.name ?? ""),
          arguments: had.function.arguments + (part.function?.arguments ?? ""),
        },
      };
    }
    next.tool_calls = calls;
  }
  return next;
}

/**
 * Saving what a tab has of a reply on every delta would write the whole text each time: writes are
 * batched (at most one per SAVE_EVERY_MS per reply) and flushed when the page is hidden or unloaded,
 * which is when a reload needs them. Each save holds an event id and the reply as of that event, so a
 * resume after it neither loses nor repeats text.
 */
const SAVE_EVERY_MS = 200;
/** @type {Map<string, import("./session.js").SavedReply>} */
const unsaved = new Map();
let saveTimer = 0;
function flushSaves() {
  clearTimeout(saveTimer);
  saveTimer = 0;
  for (const [id, state] of unsaved) saveReply(id, state);
  unsaved.clear();
}
addEventListener("pagehide", flushSaves);
/** @param {string} id @param {import("./session.js").SavedReply | null} state */
function scheduleSave(id, state) {
  if (state === null) {
    unsaved.delete(id);
    saveReply(id, null);
    return;
  }
  unsaved.set(id, state);
  if (!saveTimer) saveTimer = setTimeout(flushSaves, SAVE_EVERY_MS);
}

/**
 * Turns a reply stream's events into messages: `onMessage` gets each message as it is created and the
 * reply after every change; `onEnd` the reply as stored at its end. The events of one stream are those of
 * a streamed append (the user's message, then the reply), of a regenerate, or of a reply followed on
 * its own (`reply` is then what the tab already has of it).
 * @param {{ reply?: Message | null, onMessage: (m: Message) => void, onEnd?: (m: Message) => void }} opts
 * @returns {(e: StreamEvent) => void}
 */
export function replyEventHandler(opts) {
  let reply = opts.reply ?? null;
  return (e) => {
    if (e.event === "done" || !e.data) return;
    const data = JSON.parse(e.data);
    if (e.event === "message.created") {
      if (data.role === "assistant") reply = data;
      opts.onMessage(data);
    } else if (e.event === "message.delta") {
      reply = applyDelta(reply && reply.id === data.id ? reply : { id: data.id, role: "assistant", content: "" }, data.delta ?? {});
      opts.onMessage(reply);
    } else if (e.event === "message.reset" && reply) {
      // Its worker was lost and another generates it again, or Redis lost its events: what follows is the whole reply.
      reply = { ...reply, content: "", reasoning: null, tool_calls: null };
      opts.onMessage(reply);
    } else if (e.event && END_EVENTS.has(e.event)) {
      reply = data;
      opts.onMessage(data);
      opts.onEnd?.(data);
    }
    if (reply && e.id) scheduleSave(reply.id, isInFlight(reply) ? { lastEventId: e.id, message: reply } : null);
  };
}
