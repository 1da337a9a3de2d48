-- Pushes taken back (message/mass/delete): one row per firing and article (0 = all of it),
-- with who and when. The row is written before WeChat is called and removed if WeChat refuses,
-- so two recalls at once call WeChat once.
CREATE TABLE push_recalls (
    run_id      BIGINT NOT NULL REFERENCES push_runs (id),
    push_id     BIGINT NOT NULL REFERENCES pushes (id),
    article_idx BIGINT NOT NULL,
    recalled_by TEXT   NOT NULL,
    recalled_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, article_idx)
);
CREATE INDEX push_recalls_push ON push_recalls (push_id);
