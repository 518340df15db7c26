-- Herald's SQL truth, MySQL / MariaDB dialect (InnoDB). Times are milliseconds since the Unix epoch
-- (UTC). No table here ever receives one row per receiver per broadcast. Identifiers compare as
-- bytes (utf8mb4_bin), as in SQLite: keyset order is byte order, and 'a' never equals 'A'.

CREATE TABLE receivers (
    kind       VARCHAR(16) NOT NULL,
    id         VARCHAR(64) NOT NULL,
    city       VARCHAR(64) NOT NULL,
    -- ';new;vip;' or '' (sorted): read back as is, and compared on upsert so that re-importing an
    -- unchanged receiver writes nothing. Selections test groups in `receiver_groups`.
    `groups`   TEXT        NOT NULL,
    updated_at BIGINT      NOT NULL,
    PRIMARY KEY (kind, id),
    -- Keyset paging of one city: WHERE kind = ? AND city = ? AND id > ? ORDER BY id LIMIT 500.
    KEY receivers_by_city (kind, city, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per (receiver, group), rewritten by the upsert when a receiver's groups change: a selection
-- of any number of groups is one EXISTS probe per receiver, with the groups bound as one JSON array.
CREATE TABLE receiver_groups (
    kind VARCHAR(16) NOT NULL,
    id   VARCHAR(64) NOT NULL,
    grp  VARCHAR(64) NOT NULL,
    PRIMARY KEY (kind, id, grp)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE notifications (
    id                  VARCHAR(64)  NOT NULL PRIMARY KEY,
    title               VARCHAR(200) NOT NULL,
    body                MEDIUMTEXT   NOT NULL,
    category            VARCHAR(32)  NOT NULL,
    receiver_kind       VARCHAR(16)  NOT NULL,
    audience            MEDIUMTEXT   NOT NULL,
    -- 1 for an include list (point-to-point): its tasks are paged before broadcast ones.
    direct              BOOLEAN      NOT NULL,
    -- ';shanghai;beijing;' when the audience names cities, else '': the console's city filter.
    cities              MEDIUMTEXT   NOT NULL,
    pinned              BOOLEAN      NOT NULL,
    force_read          BOOLEAN      NOT NULL,
    valid_from          BIGINT,
    valid_until         BIGINT,
    send_at             BIGINT,
    draft               BOOLEAN      NOT NULL,
    status              VARCHAR(16)  NOT NULL,
    created_at          BIGINT       NOT NULL,
    sent_at             BIGINT,
    revoked_at          BIGINT,
    idempotency_key     VARCHAR(255) UNIQUE,
    request_fingerprint VARCHAR(128),
    KEY notifications_due (status, send_at),
    KEY notifications_newest (created_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE notification_history (
    seq             BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    notification_id VARCHAR(64) NOT NULL,
    at              BIGINT      NOT NULL,
    status          VARCHAR(16) NOT NULL,
    detail          MEDIUMTEXT  NOT NULL,
    KEY history_by_notification (notification_id, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per (notification, city): the keyset position, so a restart resumes where it stopped.
CREATE TABLE send_tasks (
    notification_id VARCHAR(64) NOT NULL,
    city            VARCHAR(64) NOT NULL,
    matched         BIGINT      NOT NULL,
    published       BIGINT      NOT NULL DEFAULT 0,
    pages_published BIGINT      NOT NULL DEFAULT 0,
    pages_delivered BIGINT      NOT NULL DEFAULT 0,
    last_receiver   VARCHAR(64),
    -- An include list's members in this city (JSON array, ≤ 10,000 ids per notification): the
    -- snapshot this task pages. NULL for a selection, which is paged live from `receivers`.
    members         MEDIUMTEXT,
    finished        BOOLEAN     NOT NULL DEFAULT 0,
    done            BOOLEAN     NOT NULL DEFAULT 0,
    PRIMARY KEY (notification_id, city),
    KEY send_tasks_open (finished, notification_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per delivered page: what makes a redelivered page count once.
CREATE TABLE delivered_pages (
    notification_id VARCHAR(64) NOT NULL,
    city            VARCHAR(64) NOT NULL,
    page_no         BIGINT      NOT NULL,
    added           BIGINT      NOT NULL,
    at              BIGINT      NOT NULL,
    PRIMARY KEY (notification_id, city, page_no)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Pages written with their task's progress, published to the queue afterwards (transactional outbox).
CREATE TABLE outbox (
    id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    topic      VARCHAR(64)  NOT NULL,
    tag        VARCHAR(64)  NOT NULL,
    msg_key    VARCHAR(255) NOT NULL,
    body       MEDIUMBLOB   NOT NULL,
    created_at BIGINT       NOT NULL,
    -- The relay reads each topic's oldest rows: direct pages never wait behind a broadcast's backlog.
    KEY outbox_by_topic (topic, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A row per read: one per receiver action, never per broadcast.
CREATE TABLE read_receipts (
    notification_id VARCHAR(64) NOT NULL,
    receiver_kind   VARCHAR(16) NOT NULL,
    receiver_id     VARCHAR(64) NOT NULL,
    read_at         BIGINT      NOT NULL,
    PRIMARY KEY (notification_id, receiver_kind, receiver_id),
    -- Deleting a receiver deletes its receipts.
    KEY read_receipts_by_receiver (receiver_kind, receiver_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- What incremental sync reads to tell apps about revocations.
-- `seq` comes from `log_heads` ('revocations'), in commit order.
CREATE TABLE revocations (
    seq             BIGINT      NOT NULL PRIMARY KEY,
    notification_id VARCHAR(64) NOT NULL,
    at              BIGINT      NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Queue messages that can never be delivered (a body that does not decode), kept for inspection.
CREATE TABLE dead_letters (
    msg_key VARCHAR(255) NOT NULL PRIMARY KEY,
    reason  TEXT         NOT NULL,
    body    MEDIUMBLOB   NOT NULL,
    at      BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Positions of the logs readers follow by position (`seq > ?`). An AUTO_INCREMENT value is taken
-- before its transaction commits, so a reader could pass a lower one that commits later and never
-- see it; each append instead raises its log's row here, whose lock orders appends by commit.
CREATE TABLE log_heads (
    name     VARCHAR(32) NOT NULL PRIMARY KEY,
    position BIGINT      NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO log_heads (name, position) VALUES ('revocations', 0);
