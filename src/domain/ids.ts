import { typeid } from "typeid-js";

// TypeIDs: a prefix plus a UUIDv7 in base32, so ids are opaque, prefixed and time-sortable.
export const newConversationId = (): string => typeid("conv").toString();
export const newMessageId = (): string => typeid("msg").toString();
export const newCompletionId = (): string => typeid("chatcmpl").toString();
export const newApiKeyId = (): string => typeid("key").toString();
export const newResponseId = (): string => typeid("resp").toString();

const ID_SHAPE = /^[a-z]+_[0-7][0-9a-hjkmnp-tv-z]{25}$/;
/** Cheap shape check, so malformed ids are 404s without a query. */
export const looksLikeId = (prefix: string, id: string): boolean =>
  id.startsWith(`${prefix}_`) && ID_SHAPE.test(id);
