#!/usr/bin/env python3
"""One snapshot of the counters an account of one hold is made of (#17): CPU
seconds of the api, the worker, Redis and every PostgreSQL process (/proc),
Redis commands by name (INFO commandstats), PostgreSQL transactions
(pg_stat_database) and statements (pg_stat_statements, when preloaded).

Usage: counters.py <api pid> <worker pid> <database>  → one JSON line"""
import json
import os
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError):
        return 0.0


def postgres_cpu():
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if open(f"/proc/{pid}/comm").read().strip().startswith("postgres"):
                total += cpu(pid)
        except OSError:
            pass
    return total


def redis_info(section):
    out = subprocess.run(["redis-cli", "INFO", section], capture_output=True, text=True).stdout
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


def psql(sql, db):
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qtAc", sql],
                         capture_output=True, text=True, env={**os.environ, "PGPASSWORD": "postgres"})
    return out.stdout.strip() if out.returncode == 0 else None


api, worker, db = sys.argv[1], sys.argv[2], sys.argv[3]
cpu_info = redis_info("cpu")
commands = {}
for key, value in redis_info("commandstats").items():
    name = key.removeprefix("cmdstat_")
    commands[name] = int(dict(kv.split("=") for kv in value.split(","))["calls"])
xacts = psql(f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{db}'", db)
stmts = psql("SELECT sum(calls) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
             f"WHERE d.datname = '{db}'", db)
print(json.dumps({
    "t": time.time(),
    "api_cpu": cpu(api),
    "worker_cpu": cpu(worker),
    "redis_cpu": float(cpu_info.get("used_cpu_sys", 0)) + float(cpu_info.get("used_cpu_user", 0)),
    "postgres_cpu": postgres_cpu(),
    "redis_commands": commands,
    "pg_transactions": int(xacts) if xacts else None,
    "pg_statements": int(float(stmts)) if stmts else None,
}))
