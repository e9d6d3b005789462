# Shell functions for the labs and scripts that run nginx next to a stage
# (stage4-epoll/scripts/wrk-vs-nginx.sh, stage5-prefork/scripts/accept-models.sh).
# Source it, then:
#   start_nginx WORKERS ADDR ROOT DIR [LISTEN_OPTIONS]   # config and logs in DIR
#   stop_nginx DIR
# The configuration is the one the bench gives nginx (bench::targets):
# access log off, sendfile on, long keep-alive, as many workers as asked.
# Both functions wait for what they did to be true (the port answers; the
# master has exited) instead of sleeping.

start_nginx() { # workers addr root dir [listen options]
  local workers=$1 addr=$2 root=$3 dir=$4 opts=${5:-}
  cat > "$dir/nginx.conf" <<CONF
worker_processes $workers;
user root;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    keepalive_timeout 60;
    server { listen $addr $opts; root $root; }
}
CONF
  nginx -c "$dir/nginx.conf" || return 1
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://$addr/" && return 0
    sleep 0.05
  done
  echo "nginx did not answer on $addr" >&2
  return 1
}

stop_nginx() { # dir
  local dir=$1 pid
  pid=$(cat "$dir/nginx.pid" 2>/dev/null) || return 0
  nginx -c "$dir/nginx.conf" -s quit
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}
