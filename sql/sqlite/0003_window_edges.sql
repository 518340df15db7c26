-- Windows opening or closing by time: the inbox hints' watch reads the notifications whose
-- valid_from or valid_until passed since its last look, by these.
CREATE INDEX notifications_valid_from ON notifications (valid_from);
CREATE INDEX notifications_valid_until ON notifications (valid_until);
