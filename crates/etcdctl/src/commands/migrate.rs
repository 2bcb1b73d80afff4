//! migrate: the v2 keys of a stopped member's data dir into its v3 store (etcdutl's library).

use crate::Cx;
use crate::exit::{self, EXIT_ERROR};

pub async fn migrate(cx: Cx) -> i32 {
    let transformer = cx.flags.str("transformer");
    if !transformer.is_empty() {
        exit::fail(
            EXIT_ERROR,
            "a --transformer program is not supported by this etcdctl",
        );
    }
    println!("using default transformer");
    let data_dir = cx.flags.str("data-dir");
    let wal_dir = cx.flags.str("wal-dir");
    let wal = (!wal_dir.is_empty()).then(|| std::path::PathBuf::from(&wal_dir));
    match etcdutl::migrate::migrate(
        std::path::Path::new(&data_dir),
        wal.as_deref(),
        cx.flags.bool("no-ttl"),
    ) {
        Ok(Some(_)) => {
            println!("finished transforming keys");
            0
        }
        Ok(None) => {
            println!("no v2 keys to migrate");
            0
        }
        Err(e) => exit::fail(EXIT_ERROR, &e.to_string()),
    }
}
