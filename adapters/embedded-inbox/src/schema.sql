-- The embedded inbox store: one entry per (receiver, notification), what the inbox needs of each
-- notification, per-notification counters, and where the cap trimmed an inbox.
-- A projection of the SQL truth, like the Redis adapter's keys; it can be rebuilt from SQL.
-- Migration 2 (category_codes.sql) keeps each category as an integer code instead of its name.

-- What the store keeps of each notification delivered (`EntryMeta`), written by its first page and
-- never changed: it orders entries and answers the validity window without the SQL truth.
CREATE TABLE notifications (
    notification_id TEXT    NOT NULL PRIMARY KEY,
    category        TEXT    NOT NULL,  -- 'system', 'activity', 'announcement'
    pinned          INTEGER NOT NULL,
    force_read      INTEGER NOT NULL,
    sent_ms         INTEGER NOT NULL,
    valid_from_ms   INTEGER,           -- NULL: open
    valid_until_ms  INTEGER,           -- NULL: open
    last_version    INTEGER NOT NULL DEFAULT 0, -- the highest version any of its unread entries got on arrival or un-archiving
    archived        INTEGER NOT NULL DEFAULT 0, -- 1 once any receiver archived it (its pages then check rank -1)
    seq             INTEGER NOT NULL            -- 1, 2, …: which inboxes its pages look at for the cap
) WITHOUT ROWID;
-- Sync asks which windows opened since its last look, and which notifications arrived anywhere
-- since (one row per notification, updated once per page: the arrivals' index costs a delivery
-- nothing per entry).
CREATE INDEX notifications_by_opening ON notifications (valid_from_ms) WHERE valid_from_ms IS NOT NULL;
CREATE INDEX notifications_by_arrival ON notifications (last_version);

-- The primary key is the list order within a category (pinned unread first, then newest, then
-- id; read backwards), so a page of one category (a tab) is one range of it, and a page of the
-- whole inbox is the first entries of each category's range merged. `rank` is 1 while a pinned
-- entry is unread, and -1 while its receiver archived it (below the list's ranges, so the list and
-- its tabs never skip archived entries one by one); with `category` and `sent_ms` fixed per notification, the key stays unique per
-- (receiver, notification) (a pinned notification's insert also checks the read, rank 0, form).
-- The category is the notification's, copied into the key so that a tab costs no extra index
-- write per delivered entry.
CREATE TABLE entries (
    receiver        TEXT    NOT NULL,  -- 'rider:r1'
    category        TEXT    NOT NULL,  -- its notification's
    rank            INTEGER NOT NULL,
    sent_ms         INTEGER NOT NULL,
    notification_id TEXT    NOT NULL,
    version         INTEGER NOT NULL,  -- from `clock`; rises on every change, for incremental sync
    read            INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (receiver, category, rank, sent_ms, notification_id)
) WITHOUT ROWID;
-- Sync finds the entries read or archived since its cursor here. Only those are in it, so an
-- arrival (unread) writes no second index: a delivery touches one B-tree per entry.
CREATE INDEX entries_changed_by_version ON entries (receiver, version) WHERE read = 1 OR rank = -1;

-- Inboxes the cap trimmed: `trimmed_upto_ms` is the newest `sent_ms` dropped from that inbox that
-- could still be shown; nothing that old is added to it again, so a dropped entry never comes back
-- (and never counts twice). No per-inbox size is kept: a delivery counts only the inboxes whose
-- turn it is (see the adapter), so an arrival costs one B-tree write.
CREATE TABLE inbox_trims (
    receiver        TEXT    NOT NULL PRIMARY KEY,
    trimmed_upto_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Hash-like counters: field 'sent', 'read' or 'sent:<city>'.
CREATE TABLE counters (
    notification_id TEXT    NOT NULL,
    field           TEXT    NOT NULL,
    value           INTEGER NOT NULL,
    PRIMARY KEY (notification_id, field)
) WITHOUT ROWID;

-- Pages delivered, with what each added: a redelivered page is recognised before touching an entry.
CREATE TABLE pages (
    notification_id TEXT    NOT NULL,
    city            TEXT    NOT NULL,
    page_no         INTEGER NOT NULL,
    added           INTEGER NOT NULL,
    PRIMARY KEY (notification_id, city, page_no)
) WITHOUT ROWID;

-- Revoked notifications: checked inside every delivery, so none lands after the revoke, and by
-- every read, so none shows after it.
CREATE TABLE withheld (
    notification_id TEXT NOT NULL PRIMARY KEY
) WITHOUT ROWID;

-- How far the revocation log of the SQL truth has been applied to `withheld`.
CREATE TABLE revocations_applied (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL
);
INSERT INTO revocations_applied (id, position) VALUES (1, 0);

-- `trimmed_upto_ms`: the highest of every inbox's, so a page of a message newer than any dropped
-- (nearly all of them) skips the per-receiver check.
-- `notifications`: how many notifications the store has seen (their `seq`).
CREATE TABLE clock (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    version         INTEGER NOT NULL,
    trimmed_upto_ms INTEGER NOT NULL,
    notifications   INTEGER NOT NULL
);
INSERT INTO clock (id, version, trimmed_upto_ms, notifications) VALUES (1, 0, -9223372036854775808, 0);
