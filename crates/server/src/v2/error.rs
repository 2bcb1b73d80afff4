//! The v2 API's errors: etcd 3.4's numeric codes, messages and HTTP statuses
//! (`{"errorCode":100,"message":"Key not found","cause":"/foo","index":7}`).

use super::json::JsonWriter;

/// A v2 error as etcd reports it: a code from etcd's table, the path or detail it concerns,
/// and the store index when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Error {
    pub code: u32,
    pub cause: String,
    pub index: u64,
}

/// etcd's v2 error codes (the ones a v2 member still produces).
pub mod code {
    pub const KEY_NOT_FOUND: u32 = 100;
    pub const TEST_FAILED: u32 = 101;
    pub const NOT_FILE: u32 = 102;
    pub const NOT_DIR: u32 = 104;
    pub const NODE_EXIST: u32 = 105;
    pub const ROOT_READ_ONLY: u32 = 107;
    pub const DIR_NOT_EMPTY: u32 = 108;
    pub const UNAUTHORIZED: u32 = 110;
    pub const PREV_VALUE_REQUIRED: u32 = 201;
    pub const TTL_NAN: u32 = 202;
    pub const INDEX_NAN: u32 = 203;
    pub const INVALID_FIELD: u32 = 209;
    pub const INVALID_FORM: u32 = 210;
    pub const REFRESH_VALUE: u32 = 211;
    pub const REFRESH_TTL_REQUIRED: u32 = 212;
    pub const RAFT_INTERNAL: u32 = 300;
    pub const LEADER_ELECT: u32 = 301;
    pub const WATCHER_CLEARED: u32 = 400;
    pub const EVENT_INDEX_CLEARED: u32 = 401;
}

impl V2Error {
    pub fn new(code: u32, cause: impl Into<String>, index: u64) -> V2Error {
        V2Error {
            code,
            cause: cause.into(),
            index,
        }
    }

    /// An error in the request itself, found before it reached the store (index 0, as etcd).
    pub fn request(code: u32, cause: impl Into<String>) -> V2Error {
        V2Error::new(code, cause, 0)
    }

    /// etcd's message for the code.
    pub fn message(&self) -> &'static str {
        match self.code {
            100 => "Key not found",
            101 => "Compare failed",
            102 => "Not a file",
            103 => "Reached the max number of peers in the cluster",
            104 => "Not a directory",
            105 => "Key already exists",
            106 => "The prefix of given key is a keyword in etcd",
            107 => "Root is read only",
            108 => "Directory not empty",
            109 => "Peer address has existed",
            110 => "The request requires user authentication",
            200 => "Value is Required in POST form",
            201 => "PrevValue is Required in POST form",
            202 => "The given TTL in POST form is not a number",
            203 => "The given index in POST form is not a number",
            204 => "Value or TTL is required in POST form",
            205 => "The given timeout in POST form is not a number",
            206 => "Name is required in POST form",
            207 => "Index or value is required",
            208 => "Index and value cannot both be specified",
            209 => "Invalid field",
            210 => "Invalid POST form",
            211 => "Value provided on refresh",
            212 => "A TTL must be provided on refresh",
            300 => "Raft Internal Error",
            301 => "During Leader Election",
            400 => "watcher is cleared due to etcd recovery",
            401 => "The event in requested index is outdated and cleared",
            402 => "Standby Internal Error",
            403 => "Invalid active size",
            404 => "Standby remove delay",
            500 => "Client Internal Error",
            _ => "",
        }
    }

    /// The HTTP status etcd answers the error with.
    pub fn http_status(&self) -> u16 {
        match self.code {
            code::KEY_NOT_FOUND => 404,
            code::NOT_FILE | code::DIR_NOT_EMPTY => 403,
            code::UNAUTHORIZED => 401,
            code::TEST_FAILED | code::NODE_EXIST => 412,
            code::RAFT_INTERNAL | code::LEADER_ELECT => 500,
            _ => 400,
        }
    }

    /// The JSON body, with Go's encoding and its trailing newline.
    pub fn to_json(&self) -> String {
        let mut w = JsonWriter::default();
        w.begin_object();
        w.field_u64("errorCode", u64::from(self.code));
        w.field_str("message", self.message());
        if !self.cause.is_empty() {
            w.field_str("cause", &self.cause);
        }
        w.field_u64("index", self.index);
        w.end_object();
        w.finish_line()
    }
}

impl std::fmt::Display for V2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.cause)
    }
}

impl std::error::Error for V2Error {}
