//! The Redis side: the Lua script, counter names, and reading the script's reply.

use std::time::Duration;

use mesh_policy::ratelimit::BucketParams;

/// GCRA (the generic cell rate algorithm) over several counters at once, atomically.
///
/// Each counter stores one number: its theoretical arrival time (TAT) in microseconds of the
/// server's clock (`TIME`, so every replica shares one clock whatever its own says). A
/// request conforms to a counter with emission interval `T` and burst `B` when
/// `TAT + T - B*T <= now`, which is exactly "a token bucket of `B` tokens refilled one per
/// `T` has a token". The request is admitted only if it conforms to every counter; only then
/// is each TAT advanced by `T`, and each key expires when its bucket would be full again, so
/// forgetting it is lossless and idle keys cost no memory.
///
/// ARGV holds `T` (microseconds, possibly fractional) and `B` per key, in KEYS order. The
/// reply is `{admitted, then per key: remaining, retry_after_us, reset_after_us}`.
pub(crate) const GCRA_LUA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tats = {}
local admitted = 1
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now) or now
  if tat < now then tat = now end
  tats[i] = tat
  if tat + interval - interval * burst > now then admitted = 0 end
end
local reply = {admitted}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tau = interval * tonumber(ARGV[2 * i])
  local tat = tats[i]
  if admitted == 1 then
    tat = tat + interval
    local ttl_ms = math.max(1, math.ceil((tat - now) / 1000))
    redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', ttl_ms)
  end
  local remaining = math.floor((now + tau - tat) / interval)
  if remaining < 0 then remaining = 0 end
  local retry = tat + interval - tau - now
  if retry < 0 then retry = 0 end
  reply[#reply + 1] = remaining
  reply[#reply + 1] = math.ceil(retry)
  reply[#reply + 1] = math.ceil(tat - now)
end
return reply
";

/// The script's ARGV pair for a bucket: emission interval in microseconds and burst.
pub(crate) fn gcra_args(params: &BucketParams) -> (String, u32) {
    let interval_us =
        params.fill_interval().as_nanos() as f64 / 1_000.0 / f64::from(params.tokens_per_fill());
    (interval_us.to_string(), params.max_tokens())
}

/// Key values longer than this are replaced by their SHA-1 in counter names, so a caller
/// sending huge header values cannot make Redis store huge keys.
const MAX_RAW_VALUE: usize = 64;

/// The counter name for `rule` and the request's key values: `{prefix}{rule}` then, per key
/// attribute, `:-` (absent), `:{len}={value}`, or `:#{sha1 hex}` for long values. The length
/// prefix keeps names unambiguous whatever bytes the values hold.
pub(crate) fn counter_name(prefix: &str, rule: &str, values: &[Option<String>]) -> String {
    let mut name = String::with_capacity(prefix.len() + rule.len() + 16);
    name.push_str(prefix);
    name.push_str(rule);
    for value in values {
        name.push(':');
        match value {
            None => name.push('-'),
            Some(v) if v.len() > MAX_RAW_VALUE => {
                name.push('#');
                name.push_str(&sha1_smol::Sha1::from(v.as_bytes()).digest().to_string());
            }
            Some(v) => {
                name.push_str(&v.len().to_string());
                name.push('=');
                name.push_str(v);
            }
        }
    }
    name
}

/// One counter's state after the script ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CounterState {
    pub(crate) remaining: u64,
    pub(crate) retry_after: Duration,
    pub(crate) reset_after: Duration,
}

/// Reads the script's reply for `keys` counters.
pub(crate) fn parse_reply(reply: &[i64], keys: usize) -> Result<(bool, Vec<CounterState>), String> {
    if reply.len() != 1 + 3 * keys {
        return Err(format!(
            "expected {} integers for {keys} counters, got {}",
            1 + 3 * keys,
            reply.len()
        ));
    }
    let admitted = match reply[0] {
        0 => false,
        1 => true,
        other => return Err(format!("admitted flag {other} is neither 0 nor 1")),
    };
    let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    let states = reply[1..]
        .chunks_exact(3)
        .map(|c| CounterState {
            remaining: u64::try_from(c[0]).unwrap_or(0),
            retry_after: micros(c[1]),
            reset_after: micros(c[2]),
        })
        .collect();
    Ok((admitted, states))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mesh_policy::ratelimit::BucketParams;

    use super::{counter_name, gcra_args, parse_reply};

    #[test]
    fn counter_names_are_unambiguous_and_bounded() {
        let v = |s: &str| Some(s.to_owned());
        assert_eq!(counter_name("rl:", "r", &[]), "rl:r");
        assert_eq!(
            counter_name("rl:", "r", &[v("alice"), None, v("")]),
            "rl:r:5=alice:-:0="
        );
        assert_ne!(
            counter_name("", "r", &[v("a:1=b")]),
            counter_name("", "r", &[v("a"), v("b")])
        );
        let long = "x".repeat(10_000);
        let name = counter_name("rl:", "r", &[Some(long)]);
        assert_eq!(name.len(), "rl:r:#".len() + 40);
    }

    #[test]
    fn args_and_replies() {
        let p = BucketParams::new(5, 3, Duration::from_secs(1)).unwrap();
        let (interval, burst) = gcra_args(&p);
        assert_eq!(burst, 5);
        assert!(interval.starts_with("333333.33"), "{interval}");
        let (admitted, states) = parse_reply(&[1, 4, 0, 200_000], 1).unwrap();
        assert!(admitted);
        assert_eq!(states[0].remaining, 4);
        assert_eq!(states[0].reset_after, Duration::from_millis(200));
        assert!(parse_reply(&[1, 4], 1).is_err());
        assert!(parse_reply(&[2, 0, 0, 0], 1).is_err());
    }
}
