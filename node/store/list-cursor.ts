// The opaque continuations of listJobs (the (created_at, id) keyset of the last job of a page),
// listSchedules (the last name of a page) and listBreakers (the last queue of a page), as
// base64url JSON, a different shape each. Clients only hand them back; a gateway may call
// decodeListCursor to refuse a tampered one as bad input before it reaches the store.

export interface ListCursor {
  createdAtMs: number;
  id: string;
}

export function encodeListCursor(cursor: ListCursor): string {
  return Buffer.from(JSON.stringify([cursor.createdAtMs, cursor.id])).toString('base64url');
}

/** The keyset in a cursor, or null when the text is not one of ours. */
export function decodeListCursor(text: string): ListCursor | null {
  if (text.length > 256) return null;
  const value = cursorArray(text);
  if (value === null || value.length !== 2) return null;
  const [createdAtMs, id] = value;
  if (typeof createdAtMs !== 'number' || !Number.isSafeInteger(createdAtMs) || typeof id !== 'string') return null;
  return { createdAtMs, id };
}

/** The opaque continuation of listSchedules: the last name of a page, as base64url JSON like
 * listJobs' cursor above, so that a cursor of another listing, or a tampered one,
 * is refused rather than taken for a name. */
export function encodeScheduleCursor(lastName: string): string {
  return Buffer.from(JSON.stringify([lastName])).toString('base64url');
}

/** The name in a cursor, or null when the text is not one of ours. */
export function decodeScheduleCursor(text: string): string | null {
  const value = cursorArray(text);
  return value !== null && value.length === 1 && typeof value[0] === 'string' ? value[0] : null;
}

/** The opaque continuation of listBreakers: the last queue of a page, tagged, so that neither
 * a schedule cursor (one name) nor a job cursor (a number first) is taken for a queue. */
export function encodeBreakerCursor(lastQueue: string): string {
  return Buffer.from(JSON.stringify(['queue', lastQueue])).toString('base64url');
}

/** The queue in a cursor, or null when the text is not one of ours. */
export function decodeBreakerCursor(text: string): string | null {
  const value = cursorArray(text);
  return value !== null && value.length === 2 && value[0] === 'queue' && typeof value[1] === 'string' ? value[1] : null;
}

/** The array a cursor spells, or null when the text is not base64url JSON of one. */
function cursorArray(text: string): unknown[] | null {
  if (!/^[A-Za-z0-9_-]+$/.test(text)) return null;
  try {
    const value: unknown = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
    return Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}
