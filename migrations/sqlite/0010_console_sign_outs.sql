-- Console sessions signed out before their expiry, by the session's
-- nonce, so that every replica (and this one after a restart) refuses the
-- signed-out cookie until it would have expired anyway (unix seconds).
-- Rows past their expiry are deleted as new ones are written.
CREATE TABLE IF NOT EXISTS console_sign_outs (
    nonce   TEXT PRIMARY KEY,
    expires BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sign_outs_expires ON console_sign_outs (expires);
