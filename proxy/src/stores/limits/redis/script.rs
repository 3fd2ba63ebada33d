//! The store's script calls: one description of a call, written as RESP straight into a
//! thread's own connection's buffer, or built as a redis-rs command for the store's connection;
//! a script Redis forgot is loaded again and called once more.

use std::sync::Arc;

use redis::aio::MultiplexedConnection;

use crate::stores::limits::resp;

/// Where a script call's arguments go: straight into a thread's own connection's buffer
/// ([`resp::Writer`]), or into a redis-rs command for the store's connection.
pub(super) trait Args {
    fn bytes(&mut self, arg: &[u8]);
    fn number(&mut self, n: u64);
    fn name(&mut self, key: &crate::stores::limits::Key);
}

impl Args for resp::Writer<'_> {
    fn bytes(&mut self, arg: &[u8]) {
        resp::Writer::bytes(self, arg);
    }
    fn number(&mut self, n: u64) {
        resp::Writer::number(self, n);
    }
    fn name(&mut self, key: &crate::stores::limits::Key) {
        // Writing into a vector cannot fail.
        self.with(|out| {
            let _ = key.redis_name().write_to(out);
        });
    }
}

impl Args for redis::Cmd {
    fn bytes(&mut self, arg: &[u8]) {
        self.arg(arg);
    }
    fn number(&mut self, n: u64) {
        self.arg(n);
    }
    fn name(&mut self, key: &crate::stores::limits::Key) {
        self.arg(key.redis_name());
    }
}

/// Arguments of a store script: every key's name, then [`ARGS_PER_KEY`] for each key.
const ARGS_PER_KEY: usize = 4;

/// `EVALSHA <script> <keys> <key>... <arg>...`: `args` writes the keys' names, then each key's
/// arguments.
pub(super) struct ScriptCall<'a> {
    pub script: &'a redis::Script,
    /// The script's text, loaded again should Redis not have it.
    pub source: &'static str,
    pub keys: usize,
    pub args: &'a (dyn Fn(&mut dyn Args) + Sync),
}

impl ScriptCall<'_> {
    fn head(&self, args: &mut dyn Args) {
        args.bytes(b"EVALSHA");
        args.bytes(self.script.get_hash().as_bytes());
        args.number(self.keys as u64);
        (self.args)(args);
    }

    /// As a redis-rs command, for the store's connection.
    pub fn cmd(&self) -> redis::Cmd {
        let mut cmd =
            redis::Cmd::with_capacity(3 + self.keys * (1 + ARGS_PER_KEY), 64 + self.keys * 96);
        self.head(&mut cmd);
        cmd
    }
}

impl resp::Command for ScriptCall<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut writer = resp::Writer::command(out, 3 + self.keys * (1 + ARGS_PER_KEY));
        self.head(&mut writer);
    }
}

/// [`eval`] on a thread's own connection, all of it by `deadline`.
pub(super) async fn eval_own(
    connection: &Arc<resp::Connection>,
    call: &ScriptCall<'_>,
    deadline: tokio::time::Instant,
) -> Result<resp::Reply, resp::Error> {
    match connection.call(call, deadline).await {
        Err(error) if error.code() == Some("NOSCRIPT") => {
            let load = redis::cmd("SCRIPT").arg("LOAD").arg(call.source).clone();
            connection.call(&load, deadline).await?;
            connection.call(call, deadline).await
        }
        answer => answer,
    }
}

/// Runs a script's call; when Redis does not have the script (a restart, a `SCRIPT FLUSH`),
/// loads it and calls again.
pub(super) async fn eval<T: redis::FromRedisValue>(
    connection: &mut MultiplexedConnection,
    script: &redis::Script,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    match cmd.query_async(connection).await {
        Err(error)
            if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
        {
            script.load_async(connection).await?;
            cmd.query_async(connection).await
        }
        answer => answer,
    }
}

impl redis::ToRedisArgs for crate::stores::limits::RedisName<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        // Writing into the command's own buffer cannot fail.
        let _ = self.write_to(&mut out.writer_for_next_arg());
    }
}
