//! The Lua scripts. Each touches the keys of one hash tag only (one notification's, or one
//! receiver's), so each runs in one slot of a Redis Cluster, atomically.

use std::sync::LazyLock;

use redis::Script;

/// An unread pinned entry's list score is its `sent_ms` plus this: it sorts above every other.
pub const PINNED_UNREAD: f64 = 2_251_799_813_685_248.0; // 2^51

/// One page, in the notification's slot. KEYS: meta, counters, pages, pending, holder buckets…;
/// ARGV: page field, city, pinned, force_read, sent_ms, valid_from ('' open), valid_until ('' open),
/// category, n, then n pairs (receiver, index of its bucket among KEYS), then what each receiver is
/// shown (one `ShownVariant` code per receiver, in order; '' without variants).
///
/// A page seen before changes nothing and answers its first outcome with the receivers whose
/// entries may still be unwritten (pending). A withheld notification's page is recorded as adding 0.
/// Otherwise each receiver not yet in the notification's holders is added to them, `sent` and
/// `sent:<city>` rise by exactly that number (and each `variant:<code>:sent` by the number added
/// that were shown it), the page is recorded with it, and the receivers added
/// are kept as pending until their entries are written. Answers {repeated, added, pinned, sent_ms,
/// category, pending receivers}.
pub static DELIVER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local meta, counters, pages, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local done = redis.call('HGET', pages, ARGV[1])
if done then
  local m = redis.call('HMGET', meta, 'pinned', 'sent_ms', 'category')
  return {1, tonumber(done), m[1] or '0', m[2] or '0', m[3] or ARGV[8], redis.call('LRANGE', pending, 0, -1)}
end
if redis.call('HEXISTS', meta, 'withheld') == 1 then
  redis.call('HSET', pages, ARGV[1], 0)
  return {0, 0, '0', '0', ARGV[8], {}}
end
if redis.call('HEXISTS', meta, 'sent_ms') == 0 then
  redis.call('HSET', meta, 'pinned', ARGV[3], 'force_read', ARGV[4], 'sent_ms', ARGV[5], 'category', ARGV[8])
  if ARGV[6] ~= '' then redis.call('HSET', meta, 'valid_from', ARGV[6]) end
  if ARGV[7] ~= '' then redis.call('HSET', meta, 'valid_until', ARGV[7]) end
end
local added, n = {}, tonumber(ARGV[9])
local shown, by_shown = ARGV[10 + 2 * n], {}
for i = 1, n do
  local receiver = ARGV[8 + 2 * i]
  if redis.call('HSETNX', KEYS[4 + tonumber(ARGV[9 + 2 * i])], receiver, '') == 1 then
    added[#added + 1] = receiver
    if shown ~= '' then
      local code = string.sub(shown, i, i)
      by_shown[code] = (by_shown[code] or 0) + 1
    end
  end
end
if #added > 0 then
  redis.call('HINCRBY', counters, 'sent', #added)
  redis.call('HINCRBY', counters, 'sent:' .. ARGV[2], #added)
  for code, k in pairs(by_shown) do
    redis.call('HINCRBY', counters, 'variant:' .. code .. ':sent', k)
  end
  redis.call('RPUSH', pending, unpack(added))
end
redis.call('HSET', pages, ARGV[1], #added)
local m = redis.call('HMGET', meta, 'pinned', 'sent_ms', 'category')
return {0, #added, m[1], m[2], m[3] or ARGV[8], added}
"#,
    )
});

/// A rebuild's page, in the notification's slot. KEYS: meta, holder buckets…; ARGV: pinned,
/// force_read, sent_ms, valid_from ('' open), valid_until ('' open), category, n, then n pairs (receiver,
/// index of its bucket among KEYS, from 2). Keeps the meta as `DELIVER` does and adds each receiver
/// to the holders, but records no page and moves no counter; a withheld notification's entries are
/// restored too (hidden by reads). Answers {how many were not holders yet, pinned, sent_ms, category, every receiver}: all of their
/// entries are written (idempotently), so a restore interrupted before its entries is finished by
/// running it again.
pub static RESTORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local meta = KEYS[1]
if redis.call('HEXISTS', meta, 'sent_ms') == 0 then
  redis.call('HSET', meta, 'pinned', ARGV[1], 'force_read', ARGV[2], 'sent_ms', ARGV[3], 'category', ARGV[6])
  if ARGV[4] ~= '' then redis.call('HSET', meta, 'valid_from', ARGV[4]) end
  if ARGV[5] ~= '' then redis.call('HSET', meta, 'valid_until', ARGV[5]) end
end
local new, all = 0, {}
for i = 1, tonumber(ARGV[7]) do
  local receiver = ARGV[6 + 2 * i]
  new = new + redis.call('HSETNX', KEYS[tonumber(ARGV[7 + 2 * i])], receiver, '')
  all[#all + 1] = receiver
end
local m = redis.call('HMGET', meta, 'pinned', 'sent_ms', 'category')
return {new, m[1], m[2], m[3] or ARGV[6], all}
"#,
    )
});

/// Replaces a notification's counters, in its slot. KEYS: counters; ARGV: field, value pairs.
pub static SET_COUNTERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('DEL', KEYS[1])
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 0
"#,
    )
});

/// Raises counters of one notification by one each, in its slot, together. KEYS: counters; ARGV:
/// the fields (`read`, and the reader's shown variant's).
pub static COUNT_READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for _, field in ipairs(ARGV) do redis.call('HINCRBY', KEYS[1], field, 1) end
return 0
"#,
    )
});

/// A Lua function: the highest version one receiver's entries hold or held (`floor`, the trims'
/// field, remembers those trimmed or erased), given its versions key and that field.
const TOP_VERSION: &str = r#"
local function top_version(versions, floor)
  local top = tonumber(floor or '0')
  local last = redis.call('ZRANGE', versions, -1, -1, 'WITHSCORES')
  if last[2] then top = math.max(top, math.floor(tonumber(last[2]) / 2)) end
  return top
end
"#;

/// One entry in each of several inboxes, all in one slot (on one server, any). KEYS: triples
/// (its category's list, versions, trims), one per receiver; ARGV: notification, list score,
/// sent_ms, cap. Adds it (unless held: versions holds every entry, archived ones too, which are in
/// no list)
/// to each inbox unless present or older than what the cap dropped there; its version is above
/// every version that inbox ever had, so sync never misses it. Answers the positions (from 1) of
/// the receivers whose inbox it took past the cap. An inbox holds at most as many entries as
/// versions it ever gave out, so one whose new version is within the cap is not counted; the
/// versions set holds every entry of every category, so its size is the inbox's.
pub static ADD_ENTRIES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"
{TOP_VERSION}
local sent_ms, cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local over = {{}}
for i = 1, #KEYS, 3 do
  local list, versions = KEYS[i], KEYS[i + 1]
  local trims = redis.call('HMGET', KEYS[i + 2], 'upto', 'floor')
  if not (trims[1] and tonumber(trims[1]) >= sent_ms) and not redis.call('ZSCORE', versions, ARGV[1]) then
    redis.call('ZADD', list, ARGV[2], ARGV[1])
    local version = top_version(versions, trims[2]) + 1
    redis.call('ZADD', versions, string.format('%.0f', version * 2), ARGV[1])
    if version > cap and redis.call('ZCARD', versions) > cap then over[#over + 1] = (i + 2) / 3 end
  end
end
return over
"#
    ))
});

/// Remembers that a receiver looked at its inbox, in the receiver's slot. KEYS: versions, trims,
/// seen; ARGV: now (ms). `version` becomes the top version the inbox has given out (every entry
/// held now is at or below it; every later one arrives above it) and `at` now; neither goes back.
pub static MARK_SEEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"
{TOP_VERSION}
local top = top_version(KEYS[1], redis.call('HGET', KEYS[2], 'floor'))
local was = redis.call('HMGET', KEYS[3], 'version', 'at')
local at = tonumber(ARGV[1])
if was[2] then at = math.max(at, tonumber(was[2])) end
redis.call('HSET', KEYS[3], 'version', string.format('%.0f', math.max(top, tonumber(was[1] or '0'))), 'at', string.format('%.0f', at))
"#
    ))
});

/// Marks entries read, in the receiver's slot. KEYS: versions, trims, then every category's list;
/// ARGV: notifications. A read entry's version score is odd, and a pinned one moves to its place
/// by time in the list that holds it. Answers the ones newly read.
pub static MARK_READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"
{TOP_VERSION}
local top = top_version(KEYS[1], redis.call('HGET', KEYS[2], 'floor'))
local newly = {{}}
for _, id in ipairs(ARGV) do
  local v = redis.call('ZSCORE', KEYS[1], id)
  if v and math.fmod(tonumber(v), 2) == 0 then
    top = top + 1
    redis.call('ZADD', KEYS[1], string.format('%.0f', top * 2 + 1), id)
    for l = 3, #KEYS do
      local score = redis.call('ZSCORE', KEYS[l], id)
      if score and tonumber(score) >= {PINNED_UNREAD} then
        redis.call('ZADD', KEYS[l], string.format('%.0f', tonumber(score) - {PINNED_UNREAD}), id)
      end
    end
    newly[#newly + 1] = id
  end
end
return newly
"#
    ))
});

/// Drops entries past the cap, in the receiver's slot. KEYS: versions, trims, archived, then every
/// category's list; ARGV: the size
/// to trim to, then triples (notification, sent_ms, 1 if it could still be shown else 0) in the
/// order `InboxCap` drops them. Drops only as many as the inbox is still over (another delivery
/// may have trimmed it meanwhile), remembers the newest `sent_ms` dropped that could still be shown
/// (`upto`: never added again) and the highest version dropped (`floor`: versions never go back).
pub static TRIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
local dropped, floor, upto = 0, nil, nil
local i = 2
while dropped < excess and i + 2 <= #ARGV do
  local v = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if v then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('SREM', KEYS[3], ARGV[i])
    for l = 4, #KEYS do redis.call('ZREM', KEYS[l], ARGV[i]) end
    dropped = dropped + 1
    floor = math.max(floor or 0, math.floor(tonumber(v) / 2))
    if ARGV[i + 2] == '1' then upto = math.max(upto or -math.huge, tonumber(ARGV[i + 1])) end
  end
  i = i + 3
end
if floor then
  local old = tonumber(redis.call('HGET', KEYS[2], 'floor') or '0')
  redis.call('HSET', KEYS[2], 'floor', string.format('%.0f', math.max(old, floor)))
end
if upto then
  local old = redis.call('HGET', KEYS[2], 'upto')
  if old then upto = math.max(tonumber(old), upto) end
  redis.call('HSET', KEYS[2], 'upto', string.format('%.0f', upto))
end
return dropped
"#,
    )
});

/// Empties one inbox, in the receiver's slot. KEYS: versions, trims, archived, seen, then every
/// category's list.
/// Keeps only the highest
/// version it had (`floor`), so a device that synced the old inbox still sees what a receiver
/// created again with this id gets; the cap's `upto` goes (that is a new inbox). Answers how many
/// entries went.
pub static ERASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"
{TOP_VERSION}
local top = top_version(KEYS[1], redis.call('HGET', KEYS[2], 'floor'))
local erased = redis.call('ZCARD', KEYS[1])
redis.call('DEL', unpack(KEYS))
if top > 0 then redis.call('HSET', KEYS[2], 'floor', string.format('%.0f', top)) end
return erased
"#
    ))
});

/// Archives or un-archives entries, in the receiver's slot. KEYS: versions, trims, archived, then
/// each entry's category list; ARGV: '1' to archive ('0' un-archives), then triples (notification,
/// sent_ms, pinned) in KEYS' order. An archived entry leaves its list for the archived set, keeping
/// its version's read bit; un-archived it goes back to its list by time (above all while pinned and
/// unread). Each change takes a new version, so sync reports it. Answers the ones changed.
pub static ARCHIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"
{TOP_VERSION}
local top = top_version(KEYS[1], redis.call('HGET', KEYS[2], 'floor'))
local archive = ARGV[1] == '1'
local changed = {{}}
for i = 2, #ARGV, 3 do
  local id, list = ARGV[i], KEYS[4 + (i - 2) / 3]
  local v = redis.call('ZSCORE', KEYS[1], id)
  if v and (redis.call('SISMEMBER', KEYS[3], id) == 1) ~= archive then
    local read = math.fmod(tonumber(v), 2)
    top = top + 1
    redis.call('ZADD', KEYS[1], string.format('%.0f', top * 2 + read), id)
    if archive then
      redis.call('ZREM', list, id)
      redis.call('SADD', KEYS[3], id)
    else
      local score = tonumber(ARGV[i + 1])
      if ARGV[i + 2] == '1' and read == 0 then score = score + {PINNED_UNREAD} end
      redis.call('ZADD', list, string.format('%.0f', score), id)
      redis.call('SREM', KEYS[3], id)
    end
    changed[#changed + 1] = id
  end
end
return changed
"#
    ))
});

/// Raises the applied revocation position, never lowering it. KEYS: the position; ARGV: position.
pub static RAISE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > old then redis.call('SET', KEYS[1], ARGV[1]) end
return 0
"#,
    )
});
