// @ts-check
import { useEffect, useState } from "preact/hooks";
import { html } from "htm/preact";
import { ago, count, titleOf } from "./format.js";

const PAGE = 20;
const SEARCH_DELAY_MS = 300;

/**
 * The tenant's conversations, newest first, a page at a time; the search box filters by title and
 * metadata (the API's `q`).
 * @param {{ api: import("./api.js").Api, selected: string | null, version: number }} props
 */
export function ConversationList({ api, selected, version }) {
  const [query, setQuery] = useState("");
  const [search, setSearch] = useState("");
  const [items, setItems] = useState(/** @type {Record<string, any>[]} */ ([]));
  const [hasMore, setHasMore] = useState(false);
  const [error, setError] = useState(/** @type {string | null} */ (null));
  const [loading, setLoading] = useState(false);

  useEffect(() => {
    const t = setTimeout(() => setSearch(query.trim()), SEARCH_DELAY_MS);
    return () => clearTimeout(t);
  }, [query]);

  useEffect(() => {
    let current = true;
    setLoading(true);
    api
      .get("/conversations", { limit: PAGE, q: search || undefined })
      .then((page) => {
        if (!current) return;
        setItems(page.data);
        setHasMore(page.has_more);
        setError(null);
      })
      .catch((err) => current && setError(err.message))
      .finally(() => current && setLoading(false));
    return () => {
      current = false;
    };
  }, [api, search, version]);

  const more = async () => {
    setLoading(true);
    try {
      const page = await api.get("/conversations", { limit: PAGE, q: search || undefined, after: items.at(-1)?.id });
      setItems((had) => [...had, ...page.data]);
      setHasMore(page.has_more);
    } catch (err) {
      setError(/** @type {Error} */ (err).message);
    } finally {
      setLoading(false);
    }
  };

  return html`<nav class="sidebar" aria-label="Conversations">
    <div class="sidebar-tools">
      <a class="button primary" href="#/new">New conversation</a>
      <label class="visually-hidden" for="conversation-search">Search conversations</label>
      <input
        id="conversation-search"
        type="search"
        placeholder="Search title or metadata"
        value=${query}
        onInput=${(/** @type {InputEvent} */ e) => setQuery(/** @type {HTMLInputElement} */ (e.currentTarget).value)}
      />
    </div>
    ${error && html`<p role="alert" class="error">${error}</p>`}
    <ul class="conversation-list" aria-label="Conversation list" aria-busy=${loading}>
      ${items.map(
        (c) => html`<li key=${c.id} data-conversation-id=${c.id}>
          <a href=${`#/c/${c.id}`} aria-current=${c.id === selected ? "page" : undefined}>
            <span class="title">${titleOf(c.title)}</span>
            <span class="meta">${c.model} · ${count(c.message_count, "message")} · ${ago(c.updated_at)}</span>
          </a>
        </li>`,
      )}
    </ul>
    ${!loading && items.length === 0 && !error && html`<p class="empty">${search ? "No conversation matches." : "No conversations yet."}</p>`}
    ${hasMore && html`<button type="button" onClick=${more} disabled=${loading}>Load more conversations</button>`}
  </nav>`;
}
