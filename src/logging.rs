//! Logging through `log` + `env_logger`: one line per event, with the connection, project and
//! run ids as key-values, as text or as JSON lines.

use std::io::Write;

use log::kv::{Key, Value, VisitSource};

/// Starts the logger. `RUST_LOG`, when set, overrides `level`.
pub fn init(format: &str, level: &str) {
    let env = env_logger::Env::default().default_filter_or(level);
    let mut builder = env_logger::Builder::from_env(env);
    if format == "json" {
        builder.format(|buf, record| {
            let mut obj = serde_json::Map::new();
            obj.insert("ts".into(), agentvisor_actors::time::now_rfc3339().into());
            obj.insert("level".into(), record.level().as_str().into());
            obj.insert("target".into(), record.target().into());
            obj.insert("msg".into(), record.args().to_string().into());
            let mut kv = JsonKv(&mut obj);
            let _ = record.key_values().visit(&mut kv);
            writeln!(buf, "{}", serde_json::Value::Object(obj))
        });
    } else {
        builder.format(|buf, record| {
            let mut kv = String::new();
            let _ = record.key_values().visit(&mut TextKv(&mut kv));
            let msg = record.args().to_string().replace('\n', "\\n");
            writeln!(
                buf,
                "{} {:<5} {}{} {}",
                agentvisor_actors::time::now_rfc3339(),
                record.level(),
                record.target(),
                kv,
                msg
            )
        });
    }
    builder.init();
}

struct TextKv<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for TextKv<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

struct JsonKv<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> VisitSource<'kvs> for JsonKv<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let v = match value.to_u64() {
            Some(n) => n.into(),
            None => value.to_string().into(),
        };
        self.0.insert(key.to_string(), v);
        Ok(())
    }
}
