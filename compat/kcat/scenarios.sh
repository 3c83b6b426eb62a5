#!/usr/bin/env bash
# kcat scenarios (see compat/README.md for the contract):
#   scenarios.sh --bootstrap HOST:PORT --scenario NAME --topic T [--security FILE]
# Prints one JSON line {"result": ..., "detail": ...}; kcat's own output goes to stderr.
# The --security properties are librdkafka's own names: kcat reads the file
# with -F. For OAUTHBEARER, librdkafka makes the unsecured JWT, its sub the user.
set -u
SEC=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bootstrap) B=$2; shift 2 ;;
    --scenario) S=$2; shift 2 ;;
    --topic) T=$2; shift 2 ;;
    --security) SEC=(-F "$2"); SECURITY=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
B=${B:-127.0.0.1:9092}; T=${T:-compat}
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
if [ ${#SEC[@]} -gt 0 ] && grep -q '^sasl.mechanism=OAUTHBEARER$' "$SECURITY"; then
  SEC+=(-X enable.sasl.oauthbearer.unsecure.jwt=true
        -X "sasl.oauthbearer.config=principal=$(sed -n 's/^sasl.username=//p' "$SECURITY")")
fi

verdict() {  # result detail
  local detail=${2//\\/\\\\}; detail=${detail//\"/\\\"}; detail=$(printf '%s' "$detail" | tr '\n\t' '  ')
  printf '{"result": "%s", "detail": "%s"}\n' "$1" "$detail"; exit 0
}
fail() {  # with librdkafka's first error line, which names the cause (the last one seldom does)
  local cause; cause=$(grep -h -m1 '|FAIL|' "$TMP"/*err "$TMP"/*.log 2>/dev/null | head -1 | sed 's/^[^]]*\]: [^ ]*: //')
  verdict fail "${cause:+librdkafka: $cause; }$1"
}
expect() {  # what got want
  [ "$2" = "$3" ] || fail "$1: got '$(printf '%s' "$2" | head -c 300)', want '$(printf '%s' "$3" | head -c 300)'"
}
produce() { timeout 30 kcat -b "$B" "${SEC[@]}" -t "$T" -P "$@" 2>>"$TMP/err" || fail "kcat -P failed: $(tail -1 "$TMP/err")"; }
consume() { timeout 30 kcat -b "$B" "${SEC[@]}" -t "$T" -C -p 0 -o beginning -e "$@" 2>>"$TMP/err"; }
lines() { seq 1 20 | sed 's/^/message-/'; }

round_trip() {  # kcat options for the producer
  lines | produce "$@"
  expect values "$(consume -c 20)" "$(lines)"
  verdict pass ""
}

case "$S" in
  version) verdict pass "$(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\).*\(librdkafka [^ ]*\).*/\1 (\2)/p')" ;;
  metadata)
    out=$(timeout 30 kcat -b "$B" "${SEC[@]}" -L -t "$T" 2>>"$TMP/err") || fail "kcat -L failed: $(tail -1 "$TMP/err")"
    echo "$out" | grep -q "topic \"$T\" with 1 partitions" || fail "metadata: $out"
    verdict pass "$(echo "$out" | grep -m1 brokers)" ;;
  roundtrip)
    printf 'k1:v1' | produce -K: -H h1=a -H h2=b
    printf 'k2:' | produce -K: -Z
    printf 'v3' | produce -H only=c
    got=$(consume -c 3 -Z -f '%k|%s|%h\n')
    expect "key|value|headers" "$got" "$(printf 'k1|v1|h1=a,h2=b\nk2|NULL|\nNULL|v3|only=c')"
    verdict pass "" ;;
  gzip|snappy|lz4|zstd) round_trip -z "$S" ;;
  acks-0|acks-1|acks-all) round_trip -X "acks=${S#acks-}" ;;
  group-resume)
    seq 0 9 | produce
    group=(-b "$B" "${SEC[@]}" -G "$T-group" "$T" -X auto.offset.reset=earliest -f '%o\n')
    first=$(timeout 30 kcat "${group[@]}" -c 4 2>>"$TMP/err")
    expect "first member's offsets" "$(echo $first)" "0 1 2 3"
    rest=$(timeout 30 kcat "${group[@]}" -c 6 2>>"$TMP/err")
    expect "offsets after restart" "$(echo $rest)" "4 5 6 7 8 9"
    verdict pass "" ;;
  rebalance)
    member() { kcat -b "$B" "${SEC[@]}" -G "$T-group" "$T" >/dev/null 2>"$TMP/$1.log" & echo $!; }
    assigned() { grep -a 'assigned:' "$TMP/$1.log" | tail -1 | grep -o "$T \[[0-9]*\]" | tr '\n' ' '; }
    waitfor() {  # seconds, then a test
      local n=$(($1 * 10)); shift
      for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done; return 1
    }
    a=$(member a)
    both() { [ "$(assigned a)" = "$T [0] $T [1] " ]; }
    waitfor 30 both || { kill "$a"; fail "first member never got both partitions: $(assigned a)"; }
    b=$(member b)
    split() { [ "$(assigned a | wc -w)" = 2 ] && [ "$(assigned b | wc -w)" = 2 ] && [ "$(assigned a)" != "$(assigned b)" ]; }
    waitfor 30 split; ok=$?
    kill "$a" "$b"; wait "$a" "$b" 2>/dev/null
    [ $ok = 0 ] || fail "no split: first has '$(assigned a)', second has '$(assigned b)'"
    verdict pass "" ;;
  offsets-by-time)
    for i in 0 1 2; do echo "t$i" | produce; sleep 0.05; done
    t1=$(consume -c 3 -f '%o %T\n' | awk '$1 == 1 {print $2}')
    [ -n "$t1" ] || fail "no timestamp for offset 1"
    expect "first message at or after ${t1}" "$(consume -o "s@$t1" -c 1 -f '%o %s')" "1 t1"
    verdict pass "" ;;
  admin) verdict n/a "kcat has no admin commands (create/describe configs/delete topic)" ;;
  large-message)
    head -c 1048576 /dev/zero | tr '\0' 'a' > "$TMP/big"; echo >> "$TMP/big"
    produce -X message.max.bytes=2097152 < "$TMP/big"
    expect "consumed value length" "$(consume -c 1 -f '%S\n')" 1048576
    expect "consumed value" "$(consume -c 1 -f '%s\n' | md5sum)" "$(md5sum < "$TMP/big")"
    verdict pass "" ;;
  unknown-topic)
    if echo x | timeout 30 kcat -b "$B" "${SEC[@]}" -t "$T" -P -X topic.metadata.propagation.max.ms=2000 2>"$TMP/err"; then
      fail "produce to a missing topic succeeded"
    fi
    grep -q -i "unknown topic" "$TMP/err" || fail "unexpected error: $(tail -1 "$TMP/err")"
    verdict pass "$(grep -i -m1 'unknown topic' "$TMP/err")" ;;
  transactions) verdict n/a "kcat's producer has no transactions (it never calls librdkafka's transactional API)" ;;
  *) verdict n/a "scenario not implemented for kcat" ;;
esac
