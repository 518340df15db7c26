-- When each receiver last looked at its inbox (`InboxStore::mark_seen`): the clock's version and
-- the time then. An unread entry is unseen while its version is above `version` (it arrived, or
-- came back from the archive, later) or its window opened after `at_ms`. One row per receiver
-- that ever looked, written by the look alone: a delivery writes nothing here.
CREATE TABLE seen (
    receiver TEXT    NOT NULL PRIMARY KEY,  -- 'rider:r1'
    version  INTEGER NOT NULL,
    at_ms    INTEGER NOT NULL
) WITHOUT ROWID;
