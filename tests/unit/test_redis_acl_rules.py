"""Pure tests of the tenant Redis ACL rules and of their comparison with ACL GETUSER.

The command categories and every GETUSER reply below were captured from a real Redis 7.0.15
(``ACL CAT`` / ``ACL CAT <category>``, and ``ACL GETUSER`` through redis-py after
``ACL SETUSER odoo-acme <build_acl_rules(...)>`` plus the drift each test names). They show
why the comparison cannot be textual: Redis re-describes the rules it was given.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import pytest

from odoo_operator.builders.redis_acl import (
    TENANT_COMMAND_RULES,
    CommandCatalog,
    TenantRedisUser,
    acl_differences,
    acl_state_from_getuser,
    acl_state_from_rules,
    build_acl_rules,
    decode_getuser_reply,
    password_sha256,
    rules_match,
    tenant_redis_user,
)

REDIS_7_0_CATEGORIES: dict[str, str] = {
    "keyspace": (
        "copy dbsize del dump exists expire expireat expiretime flushall flushdb keys migrate "
        "move object|encoding object|freq object|help object|idletime object|refcount persist "
        "pexpire pexpireat pexpiretime pttl randomkey rename renamenx restore restore-asking scan "
        "swapdb touch ttl type unlink"
    ),
    "read": (
        "bitcount bitfield_ro bitpos dbsize dump exists expiretime geodist geohash geopos "
        "georadius_ro georadiusbymember_ro geosearch get getbit getrange hexists hget hgetall "
        "hkeys hlen hmget hrandfield hscan hstrlen hvals keys lcs lindex llen lolwut lpos lrange "
        "memory|usage mget object|encoding object|freq object|idletime object|refcount "
        "pexpiretime pfcount pttl randomkey scan scard sdiff sinter sintercard sismember smembers "
        "smismember sort_ro srandmember sscan strlen substr sunion touch ttl type xinfo|consumers "
        "xinfo|groups xinfo|stream xlen xpending xrange xread xrevrange zcard zcount zdiff zinter "
        "zintercard zlexcount zmscore zrandmember zrange zrangebylex zrangebyscore zrank "
        "zrevrange zrevrangebylex zrevrangebyscore zrevrank zscan zscore zunion"
    ),
    "write": (
        "append bitfield bitop blmove blmpop blpop brpop brpoplpush bzmpop bzpopmax bzpopmin copy "
        "decr decrby del expire expireat flushall flushdb function|delete function|flush "
        "function|load function|restore geoadd georadius georadiusbymember geosearchstore getdel "
        "getex getset hdel hincrby hincrbyfloat hmset hset hsetnx incr incrby incrbyfloat linsert "
        "lmove lmpop lpop lpush lpushx lrem lset ltrim migrate move mset msetnx persist pexpire "
        "pexpireat pfadd pfdebug pfmerge psetex rename renamenx restore restore-asking rpop "
        "rpoplpush rpush rpushx sadd sdiffstore set setbit setex setnx setrange sinterstore smove "
        "sort spop srem sunionstore swapdb unlink xack xadd xautoclaim xclaim xdel xgroup|create "
        "xgroup|createconsumer xgroup|delconsumer xgroup|destroy xgroup|setid xreadgroup xsetid "
        "xtrim zadd zdiffstore zincrby zinterstore zmpop zpopmax zpopmin zrangestore zrem "
        "zremrangebylex zremrangebyrank zremrangebyscore zunionstore"
    ),
    "set": (
        "sadd scard sdiff sdiffstore sinter sintercard sinterstore sismember smembers smismember "
        "smove sort sort_ro spop srandmember srem sscan sunion sunionstore"
    ),
    "sortedset": (
        "bzmpop bzpopmax bzpopmin sort sort_ro zadd zcard zcount zdiff zdiffstore zincrby zinter "
        "zintercard zinterstore zlexcount zmpop zmscore zpopmax zpopmin zrandmember zrange "
        "zrangebylex zrangebyscore zrangestore zrank zrem zremrangebylex zremrangebyrank "
        "zremrangebyscore zrevrange zrevrangebylex zrevrangebyscore zrevrank zscan zscore zunion "
        "zunionstore"
    ),
    "list": (
        "blmove blmpop blpop brpop brpoplpush lindex linsert llen lmove lmpop lpop lpos lpush "
        "lpushx lrange lrem lset ltrim rpop rpoplpush rpush rpushx sort sort_ro"
    ),
    "hash": (
        "hdel hexists hget hgetall hincrby hincrbyfloat hkeys hlen hmget hmset hrandfield hscan "
        "hset hsetnx hstrlen hvals"
    ),
    "string": (
        "append decr decrby get getdel getex getrange getset incr incrby incrbyfloat lcs mget "
        "mset msetnx psetex set setex setnx setrange strlen substr"
    ),
    "bitmap": ("bitcount bitfield bitfield_ro bitop bitpos getbit setbit"),
    "hyperloglog": ("pfadd pfcount pfdebug pfmerge pfselftest"),
    "geo": (
        "geoadd geodist geohash geopos georadius georadius_ro georadiusbymember "
        "georadiusbymember_ro geosearch geosearchstore"
    ),
    "stream": (
        "xack xadd xautoclaim xclaim xdel xgroup|create xgroup|createconsumer xgroup|delconsumer "
        "xgroup|destroy xgroup|help xgroup|setid xinfo|consumers xinfo|groups xinfo|help "
        "xinfo|stream xlen xpending xrange xread xreadgroup xrevrange xsetid xtrim"
    ),
    "pubsub": (
        "psubscribe publish pubsub|channels pubsub|numpat pubsub|numsub pubsub|shardchannels "
        "pubsub|shardnumsub punsubscribe spublish ssubscribe subscribe sunsubscribe unsubscribe"
    ),
    "admin": (
        "acl|deluser acl|dryrun acl|getuser acl|list acl|load acl|log acl|save acl|setuser "
        "acl|users bgrewriteaof bgsave client|kill client|list client|no-evict client|pause "
        "client|unblock client|unpause cluster|addslots cluster|addslotsrange cluster|bumpepoch "
        "cluster|count-failure-reports cluster|delslots cluster|delslotsrange cluster|failover "
        "cluster|flushslots cluster|forget cluster|meet cluster|replicas cluster|replicate "
        "cluster|reset cluster|saveconfig cluster|set-config-epoch cluster|setslot cluster|slaves "
        "config|get config|resetstat config|rewrite config|set debug failover lastsave "
        "latency|doctor latency|graph latency|histogram latency|history latency|latest "
        "latency|reset module|list module|load module|loadex module|unload monitor pfdebug "
        "pfselftest psync replconf replicaof role save shutdown slaveof slowlog|get slowlog|len "
        "slowlog|reset sync"
    ),
    "fast": (
        "append asking auth bitfield_ro bzpopmax bzpopmin dbsize decr decrby discard echo exists "
        "expire expireat expiretime get getbit getdel getex getset hdel hello hexists hget "
        "hincrby hincrbyfloat hlen hmget hmset hset hsetnx hstrlen incr incrby incrbyfloat "
        "lastsave llen lolwut lpop lpush lpushx mget move multi persist pexpire pexpireat "
        "pexpiretime pfadd ping pttl publish quit readonly readwrite renamenx reset role rpop "
        "rpush rpushx sadd scard select setnx sismember smismember smove spop spublish srem "
        "strlen swapdb time touch ttl type unlink unwatch watch xack xadd xautoclaim xclaim xdel "
        "xlen xsetid zadd zcard zcount zincrby zlexcount zmscore zpopmax zpopmin zrank zrem "
        "zrevrank zscore"
    ),
    "slow": (
        "acl acl|cat acl|deluser acl|dryrun acl|genpass acl|getuser acl|help acl|list acl|load "
        "acl|log acl|save acl|setuser acl|users acl|whoami bgrewriteaof bgsave bitcount bitfield "
        "bitop bitpos blmove blmpop blpop brpop brpoplpush bzmpop client client|caching "
        "client|getname client|getredir client|help client|id client|info client|kill client|list "
        "client|no-evict client|pause client|reply client|setname client|tracking "
        "client|trackinginfo client|unblock client|unpause cluster cluster|addslots "
        "cluster|addslotsrange cluster|bumpepoch cluster|count-failure-reports "
        "cluster|countkeysinslot cluster|delslots cluster|delslotsrange cluster|failover "
        "cluster|flushslots cluster|forget cluster|getkeysinslot cluster|help cluster|info "
        "cluster|keyslot cluster|links cluster|meet cluster|myid cluster|nodes cluster|replicas "
        "cluster|replicate cluster|reset cluster|saveconfig cluster|set-config-epoch "
        "cluster|setslot cluster|shards cluster|slaves cluster|slots command command|count "
        "command|docs command|getkeys command|getkeysandflags command|help command|info "
        "command|list config config|get config|help config|resetstat config|rewrite config|set "
        "copy debug del dump eval eval_ro evalsha evalsha_ro exec failover fcall fcall_ro "
        "flushall flushdb function function|delete function|dump function|flush function|help "
        "function|kill function|list function|load function|restore function|stats geoadd geodist "
        "geohash geopos georadius georadius_ro georadiusbymember georadiusbymember_ro geosearch "
        "geosearchstore getrange hgetall hkeys hrandfield hscan hvals info keys latency "
        "latency|doctor latency|graph latency|help latency|histogram latency|history "
        "latency|latest latency|reset lcs lindex linsert lmove lmpop lpos lrange lrem lset ltrim "
        "memory memory|doctor memory|help memory|malloc-stats memory|purge memory|stats "
        "memory|usage migrate module module|help module|list module|load module|loadex "
        "module|unload monitor mset msetnx object object|encoding object|freq object|help "
        "object|idletime object|refcount pfcount pfdebug pfmerge pfselftest psetex psubscribe "
        "psync pubsub pubsub|channels pubsub|help pubsub|numpat pubsub|numsub "
        "pubsub|shardchannels pubsub|shardnumsub punsubscribe randomkey rename replconf replicaof "
        "restore restore-asking rpoplpush save scan script script|debug script|exists "
        "script|flush script|help script|kill script|load sdiff sdiffstore set setbit setex "
        "setrange shutdown sinter sintercard sinterstore slaveof slowlog slowlog|get slowlog|help "
        "slowlog|len slowlog|reset smembers sort sort_ro srandmember sscan ssubscribe subscribe "
        "substr sunion sunionstore sunsubscribe sync unsubscribe wait xgroup xgroup|create "
        "xgroup|createconsumer xgroup|delconsumer xgroup|destroy xgroup|help xgroup|setid xinfo "
        "xinfo|consumers xinfo|groups xinfo|help xinfo|stream xpending xrange xread xreadgroup "
        "xrevrange xtrim zdiff zdiffstore zinter zintercard zinterstore zmpop zrandmember zrange "
        "zrangebylex zrangebyscore zrangestore zremrangebylex zremrangebyrank zremrangebyscore "
        "zrevrange zrevrangebylex zrevrangebyscore zscan zunion zunionstore"
    ),
    "blocking": ("blmove blmpop blpop brpop brpoplpush bzmpop bzpopmax bzpopmin xread xreadgroup"),
    "dangerous": (
        "acl|deluser acl|dryrun acl|getuser acl|list acl|load acl|log acl|save acl|setuser "
        "acl|users bgrewriteaof bgsave client|kill client|list client|no-evict client|pause "
        "client|unblock client|unpause cluster|addslots cluster|addslotsrange cluster|bumpepoch "
        "cluster|count-failure-reports cluster|delslots cluster|delslotsrange cluster|failover "
        "cluster|flushslots cluster|forget cluster|meet cluster|replicas cluster|replicate "
        "cluster|reset cluster|saveconfig cluster|set-config-epoch cluster|setslot cluster|slaves "
        "config|get config|resetstat config|rewrite config|set debug failover flushall flushdb "
        "info keys lastsave latency|doctor latency|graph latency|histogram latency|history "
        "latency|latest latency|reset migrate module|list module|load module|loadex module|unload "
        "monitor pfdebug pfselftest psync replconf replicaof restore restore-asking role save "
        "shutdown slaveof slowlog|get slowlog|len slowlog|reset sort sort_ro swapdb sync"
    ),
    "connection": (
        "asking auth client|caching client|getname client|getredir client|help client|id "
        "client|info client|kill client|list client|no-evict client|pause client|reply "
        "client|setname client|tracking client|trackinginfo client|unblock client|unpause command "
        "command|count command|docs command|getkeys command|getkeysandflags command|help "
        "command|info command|list echo hello ping quit readonly readwrite reset select wait"
    ),
    "transaction": ("discard exec multi unwatch watch"),
    "scripting": (
        "eval eval_ro evalsha evalsha_ro fcall fcall_ro function|delete function|dump "
        "function|flush function|help function|kill function|list function|load function|restore "
        "function|stats script|debug script|exists script|flush script|help script|kill "
        "script|load"
    ),
}

ACME_HASH = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"  # "s3cret"
OTHER_HASH = "d9298a10d1b0735837dc4bd85dac641b0f3cef27a47e5d53a54f2f3f5b2fcffa"  # "other"

# The user right after ACL SETUSER with build_acl_rules(acme, sha256("s3cret")).
FRESH_COMMANDS = (
    b"-@all +@string +@hash +@geo +@blocking +@bitmap +@transaction +@set +@hyperloglog "
    b"+@stream +@sortedset +@list +@connection +@keyspace -swapdb -randomkey -restore-asking "
    b"-flushall -xgroup|help -migrate -flushdb -sort -keys -copy +memory|usage -sort_ro "
    b"+lolwut -select -pfdebug -pfselftest -move -client|tracking -client|kill -client|list "
    b"-client|unblock -client|pause -client|no-evict -client|unpause -client|caching -scan "
    b"-dbsize -restore -xinfo|help"
)
# The same user after a further ACL SETUSER odoo-acme +@read.
READ_WIDENED_COMMANDS = (
    b"-@all +@read +@transaction +@blocking +@string +@connection +@list +@stream "
    b"+hincrbyfloat +sadd +georadius +expire +georadiusbymember +hincrby +setbit +pexpire "
    b"+zpopmax -xgroup|help +expireat +zunionstore -sort +pfmerge +rename +zremrangebylex "
    b"+srem +sdiffstore +hdel +zremrangebyrank +persist +zincrby +zadd +geosearchstore +bitop "
    b"+pfadd +pexpireat +hsetnx +sunionstore +zrem +bitfield +geoadd +zdiffstore +object|help "
    b"+zremrangebyscore +zinterstore +renamenx -select +unlink +zrangestore +hset +zpopmin "
    b"+zmpop +smove +spop -client|tracking -client|kill -client|list -client|unblock "
    b"-client|pause -client|no-evict -client|unpause -client|caching +sinterstore +hmset +del "
    b"-xinfo|help"
)


def getuser(**changes: Any) -> dict[bytes, Any]:
    """A captured GETUSER reply of the fresh acme user, with some fields as captured after drift."""
    reply: dict[bytes, Any] = {
        b"flags": [b"on", b"sanitize-payload"],
        b"passwords": [ACME_HASH.encode()],
        b"commands": FRESH_COMMANDS,
        b"keys": b"~odoo:acme:* ~session::odoo:acme:*",
        b"channels": b"&odoo:acme:*",
        b"selectors": [],
    }
    reply.update({name.encode(): value for name, value in changes.items()})
    return reply


@pytest.fixture(scope="module")
def catalog() -> CommandCatalog:
    return CommandCatalog.from_categories(
        {name: members.split() for name, members in REDIS_7_0_CATEGORIES.items()}
    )


@pytest.fixture
def acme() -> TenantRedisUser:
    return tenant_redis_user("acme")


@pytest.fixture
def desired(acme: TenantRedisUser) -> list[str]:
    return build_acl_rules(acme, ACME_HASH)


# --- the user and its rules ---------------------------------------------------------------


def test_tenant_user_is_named_after_the_instance() -> None:
    user = tenant_redis_user("acme-eu.prod")
    assert user == TenantRedisUser(username="odoo-acme-eu.prod", key_prefix="odoo:acme-eu.prod:")
    assert user.key_pattern == "odoo:acme-eu.prod:*"


@pytest.mark.parametrize("name", ["", "Acme", "acme:x", "ac*me", "acme ", "-acme", "a" * 254])
def test_instance_names_that_would_widen_or_break_the_pattern_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid Kubernetes object name"):
        tenant_redis_user(name)


@pytest.mark.parametrize("prefix", ["odoo:*:", "odoo:a?:", "odoo:[ab]:", "odoo:a b:", "odoo:a"])
def test_key_prefix_must_be_literal_and_end_in_a_colon(prefix: str) -> None:
    with pytest.raises(ValueError, match="key prefix"):
        TenantRedisUser(username="u", key_prefix=prefix)


def test_username_without_spaces() -> None:
    with pytest.raises(ValueError, match="user name"):
        TenantRedisUser(username="odoo acme", key_prefix="odoo:acme:")


def test_password_hash_is_sha256_hex() -> None:
    assert password_sha256("s3cret") == ACME_HASH


def test_rules_reset_confine_and_hash_the_password(acme: TenantRedisUser) -> None:
    rules = build_acl_rules(acme, ACME_HASH)
    assert rules[:7] == [
        "reset",
        "on",
        f"#{ACME_HASH}",
        "~odoo:acme:*",
        "~session::odoo:acme:*",
        "&odoo:acme:*",
        "-@all",
    ]
    assert rules[6:] == list(TENANT_COMMAND_RULES)
    assert not any(rule.startswith(">") for rule in rules), "no clear-text password"
    assert "s3cret" not in " ".join(rules)


def test_rules_take_only_a_lower_case_sha256(acme: TenantRedisUser) -> None:
    assert build_acl_rules(acme, ACME_HASH.upper())[2] == f"#{ACME_HASH}"
    with pytest.raises(ValueError, match="64 hexadecimal"):
        build_acl_rules(acme, "s3cret")


def test_tenant_may_run_what_a_session_store_and_cache_need(
    desired: list[str], catalog: CommandCatalog
) -> None:
    allowed = acl_state_from_rules(desired, catalog).commands
    session_store = "get set setex psetex expire pexpire del unlink exists ttl pttl getdel"
    cache = "mget mset incr hset hget hgetall sadd smembers zadd zrange lpush lrange touch"
    connection = "ping auth hello echo reset quit client|setname client|id client|info"
    transactions = "multi exec discard watch unwatch"
    for command in f"{session_store} {cache} {connection} {transactions}".split():
        assert command in allowed, command


@pytest.mark.parametrize(
    "command",
    [
        # whole-server damage
        "flushall",
        "flushdb",
        "swapdb",
        "shutdown",
        "debug",
        "config|set",
        "config|get",
        "module|load",
        "acl|setuser",
        "acl|getuser",
        "save",
        "bgsave",
        "replicaof",
        "monitor",
        "info",
        "function|flush",
        "function|load",
        "script|load",
        "eval",
        "evalsha",
        "fcall",
        "client|kill",
        "client|list",
        "client|pause",
        # reads beyond the tenant's key pattern
        "keys",
        "scan",
        "randomkey",
        "dbsize",
        "sort",
        "sort_ro",
        "client|tracking",
        "publish",
        "pubsub|channels",
        # leaving database 0
        "select",
        "move",
        "copy",
        "migrate",
        "restore",
    ],
)
def test_tenant_may_not_run(command: str, desired: list[str], catalog: CommandCatalog) -> None:
    assert command in catalog.all_commands
    assert command not in acl_state_from_rules(desired, catalog).commands


# --- comparison with what ACL GETUSER returns --------------------------------------------


def test_fresh_user_matches_although_redis_redescribed_the_rules(
    desired: list[str], catalog: CommandCatalog
) -> None:
    observed = decode_getuser_reply(getuser())
    assert observed is not None
    assert observed["commands"] != " ".join(desired[6:])
    assert acl_differences(observed, desired, catalog) == []
    assert rules_match(observed, desired, catalog)


def test_rules_echoed_as_given_also_match(desired: list[str], catalog: CommandCatalog) -> None:
    # Newer servers keep the rules in the order they were given.
    observed = decode_getuser_reply(getuser(commands=" ".join(TENANT_COMMAND_RULES).encode()))
    assert rules_match(observed, desired, catalog)


def test_resp2_flat_list_reply_matches(desired: list[str], catalog: CommandCatalog) -> None:
    flat: list[Any] = []
    for name, value in getuser().items():
        flat += [name, value]
    assert rules_match(decode_getuser_reply(flat), desired, catalog)


def test_redis_6_shapes_are_understood(desired: list[str], catalog: CommandCatalog) -> None:
    # Redis 6.x lists bare key and channel patterns; allkeys etc. are flags there.
    observed = decode_getuser_reply(
        getuser(keys=[b"odoo:acme:*", b"session::odoo:acme:*"], channels=[b"odoo:acme:*"])
    )
    assert rules_match(observed, desired, catalog)
    wide = decode_getuser_reply(getuser(flags=[b"on", b"allkeys"], keys=[]))
    assert acl_differences(wide, desired, catalog) == [
        "key patterns: extra ~*; missing ~odoo:acme:*, ~session::odoo:acme:*"
    ]


def test_missing_user(desired: list[str], catalog: CommandCatalog) -> None:
    assert decode_getuser_reply(None) is None
    assert acl_differences(None, desired, catalog) == ["the user does not exist"]
    assert not rules_match(None, desired, catalog)


def test_widened_user_differs(desired: list[str], catalog: CommandCatalog) -> None:
    # After ACL SETUSER odoo-acme +@all ~*
    observed = decode_getuser_reply(getuser(commands=b"+@all", keys=b"~*"))
    differences = acl_differences(observed, desired, catalog)
    assert differences[0] == "key patterns: extra ~*; missing ~odoo:acme:*, ~session::odoo:acme:*"
    assert differences[1].startswith("commands: extra acl, acl|cat, ")
    assert len(differences) == 2


def test_category_added_back_is_seen_through_redis_description(
    desired: list[str], catalog: CommandCatalog
) -> None:
    # After ACL SETUSER odoo-acme +@read: the reply names +@read but not the commands it
    # brought back, which only the catalog reveals.
    observed = decode_getuser_reply(getuser(commands=READ_WIDENED_COMMANDS))
    assert acl_differences(observed, desired, catalog) == [
        "commands: extra dbsize, keys, randomkey, scan, sort_ro"
    ]


@pytest.mark.parametrize(
    ("changes", "difference"),
    [
        ({"flags": [b"off", b"sanitize-payload"]}, "enabled"),
        (
            {"flags": [b"on", b"nopass", b"sanitize-payload"], "passwords": []},
            "nopass; passwords (0 set, expected 1)",
        ),
        (
            {"passwords": [ACME_HASH.encode(), OTHER_HASH.encode()]},
            "passwords (2 set, expected 1)",
        ),
        ({"passwords": [OTHER_HASH.encode()]}, "passwords (1 set, expected 1)"),
        ({"flags": [b"on", b"skip-sanitize-payload"]}, "payload sanitizing"),
        ({"keys": b"~odoo:acme:* ~session::odoo:acme:* %R~*"}, "key patterns: extra %R~*"),
        ({"channels": b"&*"}, "channel patterns: extra &*; missing &odoo:acme:*"),
        (
            {"selectors": [{b"commands": b"-@all +get", b"keys": b"~other:*", b"channels": b""}]},
            "selectors (1 set)",
        ),
        ({"commands": FRESH_COMMANDS + b" +keys"}, "commands: extra keys"),
        ({"commands": FRESH_COMMANDS + b" -get"}, "commands: missing get"),
        ({"commands": FRESH_COMMANDS + b" +config|get"}, "commands: extra config|get"),
        ({"commands": FRESH_COMMANDS + b" +@newcategory"}, "commands: extra +@newcategory"),
    ],
)
def test_drift_is_named(
    changes: dict[str, Any], difference: str, desired: list[str], catalog: CommandCatalog
) -> None:
    observed = decode_getuser_reply(getuser(**changes))
    assert "; ".join(acl_differences(observed, desired, catalog)) == difference
    assert not rules_match(observed, desired, catalog)


def test_password_hashes_never_appear_in_differences(
    desired: list[str], catalog: CommandCatalog
) -> None:
    observed = decode_getuser_reply(getuser(passwords=[OTHER_HASH.encode()]))
    assert not any(
        ACME_HASH in d or OTHER_HASH in d for d in acl_differences(observed, desired, catalog)
    )


def test_order_of_command_rules_decides(catalog: CommandCatalog) -> None:
    # Why redis-py's acl_getuser (which splits categories from commands) is not used.
    before = acl_state_from_getuser({"commands": "-@all -get +@read"}, catalog)
    after = acl_state_from_getuser({"commands": "-@all +@read -get"}, catalog)
    assert "get" in before.commands
    assert "get" not in after.commands


def test_container_commands_have_their_own_bit(catalog: CommandCatalog) -> None:
    everything = acl_state_from_getuser({"commands": "-@all +client"}, catalog).commands
    assert {"client", "client|kill", "client|list", "client|id"} <= everything
    assert acl_state_from_getuser({"commands": "+@all -client"}, catalog).commands.isdisjoint(
        {"client", "client|kill", "client|id"}
    )


def test_rule_interpreter_follows_redis(catalog: CommandCatalog) -> None:
    state = acl_state_from_rules(
        ["on", ">pw", "~a:*", "%RW~b:*", "%R~c:*", "&x", "allcommands", "-@dangerous"], catalog
    )
    assert state.enabled
    assert state.passwords == {password_sha256("pw")}
    assert state.keys == {"~a:*", "~b:*", "%R~c:*"}
    assert state.channels == {"&x"}
    assert "get" in state.commands
    assert "flushall" not in state.commands
    assert acl_state_from_rules(["~a:*", "allkeys"], catalog).keys == {"~*"}
    reset = acl_state_from_rules(["on", ">pw", "~a", "+@all", "reset"], catalog)
    assert reset == acl_state_from_rules([], catalog)
    with pytest.raises(ValueError, match="unknown Redis ACL rule"):
        acl_state_from_rules(["frobnicate"], catalog)


# --- the session store's keys ----------------------------------------------------------


def _session_redis_key(prefix: str | None, sid: str) -> str:
    """The key Camptocamp's session_redis 17.0 (session.py, RedisSessionStore) gives session
    ``sid`` under ODOO_SESSION_REDIS_PREFIX ``prefix``: "session:", then ":<prefix>:"."""
    root = "session:"
    if prefix:
        root = f"{root}:{prefix}:"
    return f"{root}{sid}"


def _glob_prefix(pattern: str) -> str:
    """The literal part of a ``<literal>*`` glob; anything else fails the test."""
    assert pattern.endswith("*"), pattern
    literal = pattern[:-1]
    assert not set(literal) & set("*?[]\\"), pattern
    return literal


def test_the_session_store_writes_only_keys_the_extra_pattern_covers(
    acme: TenantRedisUser,
) -> None:
    sid = "Yj3Cq0m3c7ZqJq4T0m2f0n8y8Q6b1e3Q2a4d5f6g7h8"
    key = _session_redis_key(acme.session_store_prefix, sid)
    assert acme.session_store_prefix == "odoo:acme"
    assert key == f"session::odoo:acme:{sid}"
    assert key.startswith(acme.session_key_prefix)
    assert fnmatchcase(key, acme.session_key_pattern)
    # Why the extra pattern exists: whatever prefix the store is given, its keys begin with
    # "session:" and so never fall under the tenant's own odoo:acme:*.
    for prefix in (None, "", acme.key_prefix, acme.session_store_prefix):
        assert not fnmatchcase(_session_redis_key(prefix, sid), acme.key_pattern)


def test_the_user_gets_exactly_the_session_pattern_beside_its_own(
    acme: TenantRedisUser, desired: list[str], catalog: CommandCatalog
) -> None:
    state = acl_state_from_rules(desired, catalog)
    assert state.keys == {"~odoo:acme:*", "~session::odoo:acme:*"}
    assert state.channels == {"&odoo:acme:*"}, "sessions need no channel"
    assert acme.key_patterns == ("odoo:acme:*", "session::odoo:acme:*")


@pytest.mark.parametrize(
    ("first", "second"),
    [("acme", "acme-x"), ("acme", "acme.x"), ("acme", "acme0"), ("a", "a-b"), ("x", "x.y.z")],
)
def test_tenants_whose_names_begin_with_another_share_no_key(first: str, second: str) -> None:
    one, other = tenant_redis_user(first), tenant_redis_user(second)
    # Every pattern is a literal prefix and "*": two such globs match a common key exactly
    # when one literal is a prefix of the other, so this covers every possible key.
    for mine in one.key_patterns:
        for theirs in other.key_patterns:
            a, b = _glob_prefix(mine), _glob_prefix(theirs)
            assert not a.startswith(b), (mine, theirs)
            assert not b.startswith(a), (mine, theirs)
    # And concretely, for the keys each one's session store and cache write.
    keys = {
        user.username: [
            f"{user.key_prefix}cache:1",
            _session_redis_key(user.session_store_prefix, "sid"),
        ]
        for user in (one, other)
    }
    for user, neighbour in ((one, other), (other, one)):
        for key in keys[neighbour.username]:
            assert not any(fnmatchcase(key, pattern) for pattern in user.key_patterns), key
        for key in keys[user.username]:
            assert any(fnmatchcase(key, pattern) for pattern in user.key_patterns), key
