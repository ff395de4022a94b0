import { z } from "@hono/zod-openapi";

/** `limit`, `after`, `before`, `order`, as every list endpoint takes them. */
export const pageQuerySchema = z.object({
  limit: z.coerce
    .number()
    .int()
    .min(1)
    // The deployment's largest page (MAX_PAGE_LIMIT, 100 by default) is checked after parsing.
    .max(10_000)
    .default(20)
    .openapi({ description: "1 to 100 (the deployment's MAX_PAGE_LIMIT).", example: 20 }),
  after: z.string().min(1).optional().openapi({ description: "An id: the page starts after it, in `order`." }),
  before: z
    .string()
    .min(1)
    .optional()
    .openapi({ description: "An id: the page ends before it, in `order`." }),
  order: z.enum(["asc", "desc"]).optional(),
}).refine((q) => q.after === undefined || q.before === undefined, {
  message: "Give `after` or `before`, not both.",
  path: ["before"],
});
export type PageQuery = z.infer<typeof pageQuerySchema>;

export interface Page<T> {
  object: "list";
  data: T[];
  first_id: string | null;
  last_id: string | null;
  /** More items lie beyond this page in the direction walked (past `last_id`, or before `first_id` when paging with `before`). */
  has_more: boolean;
}

/**
 * How to read one page from a key-ordered table: compare the sort key with the
 * cursor's key (`gt`/`lt`), read in `direction`, then `reverse` when paging
 * backwards with `before`, so the page is always in the asked order.
 */
export interface PageScan {
  comparator: "gt" | "lt";
  direction: "asc" | "desc";
  reverse: boolean;
  /** Rows to read: one more than the limit tells whether there are more. */
  take: number;
}

export function planPageScan(query: Omit<PageQuery, "order">, order: "asc" | "desc"): PageScan {
  const backwards = query.before !== undefined;
  const direction = backwards ? (order === "asc" ? "desc" : "asc") : order;
  return {
    comparator: direction === "asc" ? "gt" : "lt",
    direction,
    reverse: backwards,
    take: query.limit + 1,
  };
}

export function toPage<T extends { id: string }>(rows: T[], scan: PageScan): Page<T> {
  const hasMore = rows.length === scan.take;
  const kept = hasMore ? rows.slice(0, scan.take - 1) : rows;
  const data = scan.reverse ? kept.reverse() : kept;
  return {
    object: "list",
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: hasMore,
  };
}
