-- Authorization data the station keeps so drivers can charge while the CSMS is unreachable.

-- The authorization cache (AuthCacheCtrlr): idTokenInfo the CSMS gave for a token, from Authorize answers
-- and TransactionEvent answers. An entry expires at cacheExpiryDateTime if the CSMS gave one, otherwise
-- AuthCacheCtrlr.LifeTime after it was last used.
CREATE TABLE auth_cache (
    id_token      TEXT NOT NULL,
    token_type    TEXT NOT NULL,
    id_token_info TEXT NOT NULL,      -- JSON IdTokenInfoType
    expires_at    TEXT,               -- cacheExpiryDateTime (ISO 8601 Z), NULL = by LifeTime
    updated_at    TEXT NOT NULL,
    last_used_at  TEXT NOT NULL,
    PRIMARY KEY (id_token, token_type)
);

-- The local authorization list (LocalAuthListCtrlr), replaced or patched only by SendLocalList, always in
-- one SQLite transaction together with its version so an interrupted update leaves the old list whole.
CREATE TABLE local_list (
    id_token      TEXT NOT NULL,
    token_type    TEXT NOT NULL,
    id_token_info TEXT NOT NULL,
    PRIMARY KEY (id_token, token_type)
);
CREATE TABLE local_list_version (
    singleton     INTEGER PRIMARY KEY CHECK (singleton = 1),
    version       INTEGER NOT NULL
);
