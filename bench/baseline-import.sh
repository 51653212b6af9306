#!/usr/bin/env bash
# The baseline: what a sysadmin's script does today, one village at a time:
# useradd, home, vhost and pool, php-fpm -t and reload, nginx -t and reload.
# Usage: baseline-import.sh SANDBOX_DIR PREFIX UID_START CSV
# (SANDBOX_DIR is a desactl sandbox, used only for its nginx.conf and php-fpm.conf.)
set -euo pipefail
dir=$1 prefix=$2 uid=$3 csv=$4
port=$(sed -n 's/^listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$dir/desa.toml")
ngx=(nginx -p "$dir/nginx/" -c "$dir/nginx/nginx.conf")
fpm_conf=$dir/php/8.2/php-fpm.conf
tail -n +2 "$csv" | while IFS=, read -r code name _ _ _; do
  slug=$(echo "$name" | tr 'A-Z' 'a-z' | sed "s/[’']//g; s/[^a-z0-9]\+/-/g; s/^-//; s/-$//")-${code//./}
  user=$prefix${code//./}
  home=$dir/srv/$slug
  useradd --system --no-create-home --home-dir "$home" --shell /usr/sbin/nologin --uid "$uid" --user-group "$user"
  uid=$((uid + 1))
  mkdir -p "$home/public" "$home/logs" "$home/tmp"
  echo "<h1>Desa $name</h1>" > "$home/public/index.html"
  chown -R "$user:www-data" "$home"; chmod 750 "$home"
  cat > "$dir/php/8.2/pool.d/$user.conf" <<POOL
[$user]
user = $user
group = $user
listen = $dir/run/php/$user.sock
listen.owner = www-data
listen.group = www-data
pm = ondemand
pm.max_children = 8
php_admin_value[open_basedir] = $home/
POOL
  cat > "$dir/nginx/sites/$slug.conf" <<VHOST
server {
    listen 127.0.0.1:$port;
    server_name $slug.bandungkab.go.id;
    root $home/public;
    access_log $home/logs/access.log;
    error_log $home/logs/error.log;
    location ~ \.php\$ { include /etc/nginx/fastcgi_params; fastcgi_pass unix:$dir/run/php/$user.sock; }
}
VHOST
  php-fpm8.2 -t -y "$fpm_conf" 2>/dev/null
  kill -USR2 "$(cat "$dir/run/php8.2-fpm.pid")"
  "${ngx[@]}" -t -q
  "${ngx[@]}" -s reload
done
