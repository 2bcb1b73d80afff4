//! migrate: v2 store keys into the v3 store. Not supported by this etcdctl yet.

use crate::Cx;
use crate::exit::{self, EXIT_ERROR};

pub async fn migrate(_cx: Cx) -> i32 {
    exit::fail(EXIT_ERROR, "migrate is not supported by this etcdctl")
}
