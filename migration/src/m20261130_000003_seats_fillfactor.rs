//! Seats are written on every hold, expiry and payment, but no index covers a
//! column those writes change, so each can be a HOT update (no index entries,
//! less WAL) — if the row's page has room for the new version. Filled to 100 %
//! at seeding, the pages had none: the first write of every seat moved it to
//! another page and added two index entries. 80 % leaves room for ~15 versions
//! per page; pruning reclaims them as the page is next read. (Applies to rows
//! written after it; an existing database needs `VACUUM FULL seats` once.)

use sea_orm_migration::prelude::*;

const UP: &str = r"
ALTER TABLE seats SET (fillfactor = 80);
";

const DOWN: &str = r"
ALTER TABLE seats RESET (fillfactor);
";

crate::sql_migration!(UP, DOWN);
