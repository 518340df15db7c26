-- The embedded inbox store: one entry per (receiver, notification), and per-notification counters.
-- A projection of the SQL truth, like the Redis adapter's keys; it can be rebuilt from SQL.
CREATE TABLE entries (
    receiver        TEXT    NOT NULL,  -- 'rider:r1'
    notification_id TEXT    NOT NULL,
    version         INTEGER NOT NULL,  -- from `clock`; rises on every change, for incremental sync
    read            INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (receiver, notification_id)
) WITHOUT ROWID;
-- No second index on (receiver, version): a delivery then touches one B-tree, not two, and sync
-- scans one receiver's entries (contiguous under the primary key), which are few.

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

-- Revoked notifications: checked inside every delivery, so none lands after the revoke.
CREATE TABLE withheld (
    notification_id TEXT NOT NULL PRIMARY KEY
) WITHOUT ROWID;

-- How far the revocation log of the SQL truth has been applied to `withheld`.
CREATE TABLE revocations_applied (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL
);
INSERT INTO revocations_applied (id, position) VALUES (1, 0);

CREATE TABLE clock (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO clock (id, version) VALUES (1, 0);
