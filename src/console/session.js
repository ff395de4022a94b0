// @ts-check
/**
 * What the console keeps in the tab's session storage: the API key (never in a URL, gone when the tab
 * closes) and, while a reply streams, what this tab has of it, so a reload resumes after the last event
 * it saw instead of starting over.
 */
const KEY = "parley.apiKey";
const REPLY_PREFIX = "parley.reply.";

export function savedApiKey() {
  return sessionStorage.getItem(KEY);
}

/** @param {string | null} key */
export function saveApiKey(key) {
  if (key === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, key);
}

/**
 * @typedef {{ lastEventId: string, message: Record<string, any> }} SavedReply
 * @param {string} messageId
 * @returns {SavedReply | null}
 */
export function savedReply(messageId) {
  try {
    const raw = sessionStorage.getItem(REPLY_PREFIX + messageId);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

/** @param {string} messageId @param {SavedReply | null} state */
export function saveReply(messageId, state) {
  try {
    if (state === null) sessionStorage.removeItem(REPLY_PREFIX + messageId);
    else sessionStorage.setItem(REPLY_PREFIX + messageId, JSON.stringify(state));
  } catch {
    // Storage full or off: a reload then follows the reply from its start, which is only slower.
  }
}

/** Forget every saved reply (signing out). */
export function clearSession() {
  for (const k of Object.keys(sessionStorage)) if (k.startsWith(REPLY_PREFIX) || k === KEY) sessionStorage.removeItem(k);
}
