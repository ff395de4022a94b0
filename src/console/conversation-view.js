// @ts-check
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { html } from "htm/preact";
import { ApiError } from "./api.js";
import { count, titleOf } from "./format.js";
import { MessageView } from "./message-view.js";
import { isInFlight, replyEventHandler } from "./reply-stream.js";
import { saveReply, savedReply } from "./session.js";

/** @typedef {Record<string, any>} Message */

const PAGE = 50;
/** How often an open conversation looks for changes made elsewhere (another tab, another client, its summary). */
const POLL_MS = 1500;
/** Scrolled within this many pixels of the end, new text keeps the view at the end. */
const STICK_PX = 80;

/**
 * Messages by seq: a message replaces the one with its id, and also one with its seq (a regenerated reply
 * takes the replaced reply's seq).
 * @param {Message[]} list @param {Message} m
 */
function upsert(list, m) {
  const rest = list.filter((x) => x.id !== m.id && (m.seq === undefined || x.seq !== m.seq));
  const had = list.find((x) => x.id === m.id);
  const merged = had ? { ...had, ...m } : m;
  rest.push(merged);
  return rest.sort((a, b) => a.seq - b.seq);
}

/**
 * The newest page as read now replaces what was shown from its first seq on (messages deleted or
 * replaced elsewhere go), and keeps the older pages already loaded.
 * @param {Message[]} list @param {Message[]} newest
 */
function mergeNewest(list, newest) {
  if (newest.length === 0) return [];
  const from = newest[0]?.seq ?? 0;
  return [...list.filter((m) => m.seq < from), ...newest];
}

/** @param {unknown} err */
const messageOf = (err) => (err instanceof Error ? err.message : String(err));

/**
 * One conversation: its history (older pages on demand), the reply in flight followed live, and the
 * turn's actions (send, stop, regenerate, fork, edit the title).
 * @param {{ api: import("./api.js").Api, id: string, onChanged: () => void }} props
 */
export function ConversationView({ api, id, onChanged }) {
  const [conversation, setConversation] = useState(/** @type {Message | null} */ (null));
  const [messages, setMessages] = useState(/** @type {Message[]} */ ([]));
  const [hasOlder, setHasOlder] = useState(false);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const [notFound, setNotFound] = useState(false);
  const [error, setError] = useState(/** @type {string | null} */ (null));
  const [status, setStatus] = useState("");
  const [sending, setSending] = useState(false);
  const [editing, setEditing] = useState(false);

  /** Replies this tab is receiving events of (its own stream, or one it follows): never followed twice. */
  const followed = useRef(/** @type {Set<string>} */ (new Set()));
  const unmounted = useRef(new AbortController());
  const scroller = useRef(/** @type {HTMLElement | null} */ (null));
  const stick = useRef(true);
  /** Set before older messages are put in front: the distance from the end to keep. */
  const keepFromEnd = useRef(/** @type {number | null} */ (null));
  const messagesRef = useRef(messages);
  messagesRef.current = messages;

  const base = `/conversations/${id}`;
  const put = useCallback((/** @type {Message} */ m) => setMessages((list) => upsert(list, m)), []);

  const announceEnd = useCallback((/** @type {Message} */ reply) => {
    if (reply.status === "completed") setStatus("Reply completed");
    else if (reply.status === "cancelled") setStatus("Reply cancelled");
    else if (reply.status === "failed") setStatus(`Reply failed: ${reply.error?.message ?? "unknown error"}`);
  }, []);

  /** A stream this tab opened or follows; its reply is marked followed while it lasts. */
  const runStream = useCallback(
    async (/** @type {"GET" | "POST"} */ method, /** @type {string} */ path, /** @type {{ body?: unknown, lastEventId?: string, reply?: Message | null }} */ opts) => {
      /** @type {string | null} */
      let replyId = opts.reply?.id ?? null;
      const handle = replyEventHandler({
        reply: opts.reply ?? null,
        onMessage: (m) => {
          if (m.role === "assistant" && m.id) {
            replyId = m.id;
            followed.current.add(m.id);
            if (isInFlight(m)) setStatus("Generating…");
          }
          put(m);
        },
        onEnd: announceEnd,
      });
      try {
        await api.stream(method, path, { body: opts.body, lastEventId: opts.lastEventId, signal: unmounted.current.signal, onEvent: handle });
      } finally {
        if (replyId) followed.current.delete(replyId);
      }
    },
    [api, put, announceEnd],
  );

  /**
   * Follow a reply in flight that this tab has no stream of: after a reload, from the last event this tab
   * saved (Last-Event-ID), with the text it had; otherwise from the reply's first event. Marked followed at
   * once (runStream unmarks it when its stream ends), so no second look starts another follow meanwhile.
   */
  const follow = useCallback(
    async (/** @type {Message} */ reply) => {
      if (followed.current.has(reply.id)) return;
      followed.current.add(reply.id);
      const saved = savedReply(reply.id);
      const start = saved ? { ...reply, ...saved.message } : { ...reply, content: "", reasoning: null, tool_calls: null };
      put(start);
      try {
        await runStream("GET", `${base}/messages/${reply.id}/events`, { reply: start, lastEventId: saved?.lastEventId });
      } catch (err) {
        if (unmounted.current.signal.aborted) return;
        // The saved event id may be refused (its events expired): the next look starts from the first event.
        saveReply(reply.id, null);
        // The stored message is the truth meanwhile; one still in flight is followed again by the next look.
        try {
          put(await api.get(`${base}/messages/${reply.id}`));
        } catch {
          setError(messageOf(err));
        }
      }
    },
    [api, base, put, runStream],
  );

  const followInFlight = useCallback(
    (/** @type {Message[]} */ list) => {
      for (const m of list) if (m.role === "assistant" && isInFlight(m)) void follow(m);
    },
    [follow],
  );

  const refreshNewest = useCallback(async () => {
    const [conv, page] = await Promise.all([api.get(base), api.get(`${base}/messages`, { order: "desc", limit: PAGE })]);
    const newest = [...page.data].reverse();
    setConversation(conv);
    // Replies this tab streams keep their live text until their own events end them.
    setMessages((list) => mergeNewest(list, newest.map((m) => (followed.current.has(m.id) ? list.find((x) => x.id === m.id) ?? m : m))));
    return { newest, hasMore: page.has_more };
  }, [api, base]);

  // First load: the conversation and its newest page, scrolled to the end; a reply in flight is followed.
  useEffect(() => {
    const aborter = unmounted.current;
    refreshNewest()
      .then(({ newest, hasMore }) => {
        setHasOlder(hasMore);
        followInFlight(newest);
      })
      .catch((err) => {
        if (err instanceof ApiError && err.status === 404) setNotFound(true);
        else setError(messageOf(err));
      });
    return () => aborter.abort();
  }, [refreshNewest, followInFlight]);

  // Turns started elsewhere: the newest message is looked at now and then; a change reloads the newest page.
  useEffect(() => {
    if (notFound) return;
    const timer = setInterval(async () => {
      if (document.hidden) return;
      try {
        const [conv, page] = await Promise.all([api.get(base), api.get(`${base}/messages`, { order: "desc", limit: 1 })]);
        // Its title, counts and running summary (written in the background after a turn) may have changed.
        setConversation((had) => (had && had.updated_at === conv.updated_at && JSON.stringify(had) === JSON.stringify(conv) ? had : conv));
        const newest = page.data[0];
        const shown = messagesRef.current.at(-1);
        // A reply shown in flight that nothing here follows (a stream that broke): follow it again, from where this tab was.
        for (const m of messagesRef.current) if (m.role === "assistant" && isInFlight(m) && !followed.current.has(m.id)) void follow(m);
        const same = newest ? shown && shown.id === newest.id && (shown.status === newest.status || followed.current.has(newest.id)) : !shown;
        if (same) return;
        const { newest: list } = await refreshNewest();
        followInFlight(list);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) setNotFound(true);
      }
    }, POLL_MS);
    return () => clearInterval(timer);
  }, [api, base, notFound, refreshNewest, followInFlight, follow]);

  const loadOlder = useCallback(async () => {
    const oldest = messagesRef.current[0];
    if (!oldest || loadingOlder) return;
    setLoadingOlder(true);
    try {
      const page = await api.get(`${base}/messages`, { order: "desc", limit: PAGE, after: oldest.id });
      const el = scroller.current;
      keepFromEnd.current = el ? el.scrollHeight - el.scrollTop : null;
      setMessages((list) => [...[...page.data].reverse().filter((m) => !list.some((x) => x.id === m.id)), ...list]);
      setHasOlder(page.has_more);
    } catch (err) {
      setError(messageOf(err));
    } finally {
      setLoadingOlder(false);
    }
  }, [api, base, loadingOlder]);

  // Older messages put in front keep what was on screen in place; new text at the end keeps the end in view.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    if (keepFromEnd.current !== null) {
      el.scrollTop = el.scrollHeight - keepFromEnd.current;
      keepFromEnd.current = null;
    } else if (stick.current) {
      el.scrollTop = el.scrollHeight;
    }
  }, [messages]);

  // Scrolled to the top: the next older page loads by itself (the button does the same from the keyboard).
  const topSentinel = useRef(/** @type {HTMLElement | null} */ (null));
  useEffect(() => {
    const el = topSentinel.current;
    if (!el || !hasOlder) return;
    const observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && !stick.current) void loadOlder();
    }, { root: scroller.current });
    observer.observe(el);
    return () => observer.disconnect();
  }, [hasOlder, loadOlder]);

  const turn = async (/** @type {() => Promise<void>} */ run) => {
    setSending(true);
    setError(null);
    stick.current = true;
    try {
      await run();
    } catch (err) {
      if (!unmounted.current.signal.aborted) setError(messageOf(err));
    } finally {
      setSending(false);
      onChanged();
      api.get(base).then(setConversation, () => {});
    }
  };

  const send = (/** @type {string} */ content) =>
    turn(() => runStream("POST", `${base}/messages`, { body: { role: "user", content, stream: true } }));

  const regenerate = (/** @type {Message} */ reply) =>
    turn(() => runStream("POST", `${base}/messages/${reply.id}/regenerate`, { body: { stream: true } }));

  const live = messages.find((m) => m.role === "assistant" && isInFlight(m));
  const stop = async () => {
    if (!live) return;
    try {
      put(await api.post(`${base}/messages/${live.id}/cancel`));
    } catch (err) {
      setError(messageOf(err));
    }
  };

  const fork = async (/** @type {Message} */ at) => {
    try {
      const forked = await api.post(`${base}/fork`, { message_id: at.id });
      onChanged();
      location.hash = `#/c/${forked.id}`;
    } catch (err) {
      setError(messageOf(err));
    }
  };

  const saveTitle = async (/** @type {string} */ title) => {
    try {
      setConversation(await api.patch(base, { title }));
      setEditing(false);
      onChanged();
    } catch (err) {
      setError(messageOf(err));
    }
  };

  if (notFound) {
    return html`<section class="conversation"><p role="alert" class="error">Conversation not found.</p><a href="#/">Back to the conversations</a></section>`;
  }
  const busy = sending || Boolean(live);
  return html`<section class="conversation" aria-busy=${!conversation}>
    <div class="conversation-head">
      <a class="back" href="#/">← Conversations</a>
      ${editing
        ? html`<${TitleEditor} title=${conversation?.title ?? ""} onSave=${saveTitle} onCancel=${() => setEditing(false)} />`
        : html`<h1>${conversation ? titleOf(conversation.title) : "Loading…"}</h1>
            <button type="button" onClick=${() => setEditing(true)} disabled=${!conversation}>Edit title</button>`}
      ${conversation &&
      html`<p class="meta">
        ${conversation.model} · ${conversation.context_strategy} · ${count(conversation.message_count, "message")}
        ${conversation.system && html` · system: <span class="system">${conversation.system}</span>`}
      </p>`}
      ${conversation?.summary &&
      html`<section class="summary" aria-label="Summary">
        <details>
          <summary>Summary of the messages up to ${conversation.summary.through_seq} (${count(conversation.summary.tokens, "token")})</summary>
          <p data-testid="summary-content">${conversation.summary.content}</p>
        </details>
      </section>`}
    </div>
    ${error && html`<p role="alert" class="error">${error}</p>`}
    <div
      class="messages-scroll"
      ref=${scroller}
      tabindex="0"
      aria-label="Conversation history"
      onScroll=${(/** @type {Event} */ e) => {
        const el = /** @type {HTMLElement} */ (e.currentTarget);
        stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < STICK_PX;
      }}
    >
      ${hasOlder &&
      html`<div ref=${topSentinel} class="older">
        <button type="button" onClick=${loadOlder} disabled=${loadingOlder}>${loadingOlder ? "Loading…" : "Load older messages"}</button>
      </div>`}
      <ol class="messages" aria-label="Messages">
        ${messages.map(
          (m, i) => html`<${MessageView}
            key=${m.id}
            message=${m}
            isLast=${i === messages.length - 1}
            busy=${busy}
            onFork=${fork}
            onRegenerate=${regenerate}
          />`,
        )}
      </ol>
    </div>
    <p role="status" class="status">${status}</p>
    <${Composer} busy=${busy} live=${Boolean(live)} onSend=${send} onStop=${stop} />
  </section>`;
}

/** @param {{ title: string, onSave: (t: string) => void, onCancel: () => void }} props */
function TitleEditor({ title, onSave, onCancel }) {
  /** @param {SubmitEvent} e */
  const submit = (e) => {
    e.preventDefault();
    onSave(String(new FormData(/** @type {HTMLFormElement} */ (e.currentTarget)).get("title") ?? "").trim());
  };
  return html`<form class="title-editor" aria-label="Edit title" onSubmit=${submit}
      onKeyDown=${(/** @type {KeyboardEvent} */ e) => e.key === "Escape" && onCancel()}>
    <label for="title-input">Title</label>
    <input id="title-input" name="title" value=${title} maxlength="500" autofocus />
    <button type="submit" class="primary">Save title</button>
    <button type="button" onClick=${onCancel}>Cancel</button>
  </form>`;
}

/** @param {{ busy: boolean, live: boolean, onSend: (text: string) => void, onStop: () => void }} props */
function Composer({ busy, live, onSend, onStop }) {
  const [text, setText] = useState("");
  const submit = (/** @type {Event} */ e) => {
    e.preventDefault();
    if (busy || !text.trim()) return;
    onSend(text);
    setText("");
  };
  return html`<form class="composer" aria-label="Send a message" onSubmit=${submit}>
    <label class="visually-hidden" for="composer-input">Message</label>
    <textarea
      id="composer-input"
      rows="2"
      placeholder="Message (Enter sends, Shift+Enter a new line)"
      value=${text}
      onInput=${(/** @type {InputEvent} */ e) => setText(/** @type {HTMLTextAreaElement} */ (e.currentTarget).value)}
      onKeyDown=${(/** @type {KeyboardEvent} */ e) => {
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing) submit(e);
      }}
    ></textarea>
    ${live
      ? html`<button type="button" class="danger" onClick=${onStop}>Stop</button>`
      : html`<button type="submit" class="primary" disabled=${busy || !text.trim()}>Send</button>`}
  </form>`;
}
