//! `ETCDCTL_API=2`: the v2 API is not supported; say so as etcdctl says for unknown versions.

pub fn run(_args: Vec<String>) -> i32 {
    eprintln!("unsupported API version 2");
    1
}
