#!/usr/bin/env bash
# The baseline: what a sysadmin does today with the mariadb client and a shell loop.
#   baseline-db.sh db SANDBOX_DIR LIST            a database, two accounts, grants and a
#                                                 0600 .my.cnf for each "slug user" line
#   baseline-db.sh opensid SANDBOX_DIR LIST TAR   OpenSID into each listed tenant: unpack as
#                                                 the user, config, first run, admin password
# (SANDBOX_DIR is a desactl sandbox with --with-mariadb, used for its socket and homes.)
set -euo pipefail
what=$1 dir=$2 list=$3
sock=$dir/run/mariadb.sock
port=$(sed -n '/^\[mariadb\]/,/^\[/s/^port = \([0-9]*\)/\1/p' "$dir/desa.toml")
sql() { mariadb --no-defaults -uroot --socket="$sock" -e "$1"; }
case $what in
db)
  while read -r slug user; do
    db=hand_${user: -10}
    pw=$(openssl rand -base64 32 | tr -dc 'A-Za-z0-9' | cut -c1-32)
    sql "CREATE DATABASE \`$db\` CHARACTER SET utf8mb4;
         CREATE USER '$db'@'localhost' IDENTIFIED BY '$pw'; CREATE USER '$db'@'127.0.0.1' IDENTIFIED BY '$pw';
         GRANT ALL ON \`$db\`.* TO '$db'@'localhost'; GRANT ALL ON \`$db\`.* TO '$db'@'127.0.0.1';"
    home=$dir/srv/$slug
    printf '[client]\nuser=%s\npassword=%s\nsocket=%s\n[mysql]\ndatabase=%s\n' "$db" "$pw" "$sock" "$db" > "$home/.my.cnf"
    chown "$user:$user" "$home/.my.cnf"; chmod 600 "$home/.my.cnf"
  done < "$list"
  ;;
opensid)
  tar=$4
  cp "$tar" /var/tmp/opensid-baseline.tar.gz; chmod 644 /var/tmp/opensid-baseline.tar.gz
  n=0
  while read -r slug user; do
    home=$dir/srv/$slug pub=$dir/srv/$slug/public
    db=hand_${user: -10}
    pw=$(sed -n 's/^password=//p' "$home/.my.cnf")
    rm -f "$pub/index.html"
    runuser -u "$user" -- tar -xzf /var/tmp/opensid-baseline.tar.gz -C "$pub" --no-same-owner --no-same-permissions
    runuser -u "$user" -- mkdir -p "$pub/desa/config"
    printf "<?php\n\$db['default']['hostname'] = '127.0.0.1';\n\$db['default']['port'] = %s;\n\$db['default']['username'] = '%s';\n\$db['default']['password'] = '%s';\n\$db['default']['database'] = '%s';\n\$db['default']['dbcollat'] = 'utf8_general_ci';\n" \
      "$port" "$db" "$pw" "$db" > "$pub/desa/config/database.php"
    printf "<?php\n\$config['trusted_hosts'] = ['%s.bandungkab.go.id'];\n" "$slug" > "$pub/desa/config/config.php"
    php -r 'echo "base64:" . base64_encode(random_bytes(32));' > "$pub/desa/app_key"
    chown -R "$user:www-data" "$pub/desa"
    p=$((16500 + n)); n=$((n + 1))
    (cd "$pub" && exec runuser -u "$user" -- php -d memory_limit=512M -S "127.0.0.1:$p" index.php >/dev/null 2>&1) &
    srv=$!
    for _ in $(seq 50); do curl -s -o /dev/null "127.0.0.1:$p" && break; sleep 0.1; done
    curl -s -o /dev/null -H "Host: $slug.bandungkab.go.id" "127.0.0.1:$p/"
    pkill -P "$srv" php || true; kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true
    hash=$(php -r 'echo password_hash(bin2hex(random_bytes(8)), PASSWORD_BCRYPT);')
    mariadb --no-defaults -uroot --socket="$sock" "$db" -e "UPDATE user SET password = '$hash' WHERE username = 'admin'"
  done < "$list"
  ;;
esac
