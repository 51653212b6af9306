import Foundation

/// `php.masters = "tenant"` (production): each tenant's pool runs in a php-fpm master of its
/// own, an instance of desa's template unit `desa-phpX.Y-fpm@USER.service`, so that
/// everything the tenant's PHP starts (its workers, and any program they start through
/// `proc_open`) lies in one cgroup, which the kernel holds to the tenant's memory, CPU and
/// process limits (`QuotasCapability` writes each instance's drop-in). A shared master cannot
/// give that: its workers are all in its one cgroup. The cost, measured idle at 280 tenants
/// (`bench/run.py masters`): about 10 MB more a tenant.
///
/// Per PHP version, in `php.tenant_dir/VERSION/`: `pools/USER.conf` (the pools, as with a
/// shared master), `master.conf` (the instances' one main configuration: the unit's
/// `DESA_POOL` names the pool to include, which php-fpm expands), and `check.conf`, which
/// includes every pool at once, so that one `php-fpm -t` checks a batch's pools as the shared
/// master's check does. Sockets are in `/run/desa-php/VERSION` (the unit's runtime directory, made
/// again at boot). Each instance is wanted at boot by `multi-user.target` through a drop-in
/// of its own, as the image backend's mounts are.
public enum TenantMasters {
    public static func on(_ c: Config) -> Bool { c.mode == .production && c.php.masters == .tenant }

    /// Sockets by PHP version (`/run/desa-php/8.2/USER.sock`): a tenant moved to another
    /// version gets a new socket, so its new master never meets its old one's.
    static func socketDir(_ v: String) -> String { "/run/" + runtimeDirectory(v) }
    static func runtimeDirectory(_ v: String) -> String { "desa-php/" + v }

    static func dir(_ v: String, _ c: Config) -> String { c.php.tenantDir + "/" + v }
    static func masterConf(_ v: String, _ c: Config) -> String { dir(v, c) + "/master.conf" }
    static func checkConf(_ v: String, _ c: Config) -> String { dir(v, c) + "/check.conf" }

    /// The template unit's name (`desa-php8.2-fpm@.service`), and one tenant's instance.
    public static func template(_ v: String) -> String { "desa-php\(v)-fpm@.service" }
    public static func unit(_ v: String, user: String) -> String { "desa-php\(v)-fpm@\(user).service" }
    static func unitDir(_ c: Config) -> String { c.quota.unitDir }
    static func wantsPath(_ t: Tenant, _ c: Config) -> String { unitDir(c) + "/multi-user.target.d/desa-php-" + t.code + ".conf" }
    /// Where an instance's own drop-ins go (`desa-php8.2-fpm@USER.service.d/`).
    static func dropInDir(_ t: Tenant, _ c: Config) -> String { unitDir(c) + "/" + unit(t.php, user: t.userName(prefix: c.userPrefix)) + ".d" }

    /// PHP `v`'s settings as the pools use them: in this mode, desa's own paths.
    static func effective(_ v: String, _ p: PHPSettings.Version, _ c: Config) -> PHPSettings.Version {
        guard on(c) else { return p }
        var e = p
        e.mainConf = checkConf(v, c)
        e.poolDir = dir(v, c) + "/pools"
        e.socketDir = socketDir(v)
        e.pidFile = ""
        e.service = template(v)
        return e
    }

    /// The server's files of this mode: per PHP version, its template unit, master.conf and
    /// check.conf, each with the service that takes it.
    static func serverFiles(_ c: Config) -> [(path: String, content: String, service: String)] {
        guard on(c) else { return [] }
        return c.php.versions.keys.sorted().flatMap { v -> [(path: String, content: String, service: String)] in
            let p = c.php.versions[v]!
            let php = ServiceSpec.phpFPM(v, c).name, systemd = ServiceSpec.systemd(c).name
            return [
                (unitDir(c) + "/" + template(v), templateUnit(v, p, c), systemd),
                (masterConf(v, c), master(v, c), php),
                (checkConf(v, c), check(v, c), php),
            ]
        }
    }

    static let header = "# desa-managed server"
    /// The same mark in php-fpm's configuration, whose comments start with `;`.
    static let confHeader = "; desa-managed server"
    /// Whether a server file is desa's, by either mark.
    static func isOurs(_ text: String) -> Bool { text.hasPrefix(header) || text.hasPrefix(confHeader) }

    static func templateUnit(_ v: String, _ p: PHPSettings.Version, _ c: Config) -> String {
        """
        \(header)
        # One tenant's PHP \(v): its own php-fpm master running only its pool (instance: its user).
        # Its drop-in desa-limits.conf holds the tenant's memory, CPU and processes.
        [Unit]
        Description=desa: PHP \(v) FastCGI of %i
        After=network.target local-fs.target

        [Service]
        Type=notify
        Environment=DESA_POOL=%i
        ExecStart=\(p.binary) --nodaemonize --fpm-config \(masterConf(v, c))
        ExecReload=/bin/kill -USR2 $MAINPID
        RuntimeDirectory=\(runtimeDirectory(v))
        RuntimeDirectoryPreserve=yes
        Slice=desa-tenants.slice
        # The kernel's OOM killer ends the largest process of the tenant's cgroup (a worker):
        # that request fails, the master starts another worker, the unit goes on.
        OOMPolicy=continue
        Restart=on-failure
        RestartSec=2

        """
    }

    static func master(_ v: String, _ c: Config) -> String {
        """
        \(confHeader)
        ; One tenant's php-fpm master (unit \(template(v))): DESA_POOL is the instance, its user.
        [global]
        error_log = syslog
        syslog.ident = desa-php\(v)-${DESA_POOL}
        include = \(dir(v, c))/pools/${DESA_POOL}.conf

        """
    }

    /// Every pool at once, for `php-fpm -t` only (never started); its own pool keeps the
    /// check from failing when no tenant has one.
    static func check(_ v: String, _ c: Config) -> String {
        """
        \(confHeader)
        ; For php-fpm -t only: every tenant's pool at once. Never started.
        [global]
        error_log = /dev/null
        include = \(dir(v, c))/pools/*.conf

        [desa-check]
        user = nobody
        group = nogroup
        listen = \(socketDir(v))/desa-check.sock
        pm = ondemand
        pm.max_children = 1

        """
    }

    /// A tenant's instance wanted at boot.
    static func wants(_ t: Tenant, _ c: Config) -> String {
        """
        \(Renderer.nginxHeaderPrefix)\(t.code)
        [Unit]
        Wants=\(unit(t.php, user: t.userName(prefix: c.userPrefix)))

        """
    }

    /// The tenants' masters systemd has loaded (running, failed or stopped since), with
    /// their ACTIVE state; nil when systemd cannot be asked.
    static func states(runner: ProcessRunning = SystemProcessRunner()) -> [String: String]? {
        guard let r = try? runner.run(["/usr/bin/systemctl", "list-units", "--all", "--plain", "--no-legend", "--full", "desa-php*-fpm@*.service"]),
              r.ok else { return nil }
        var out: [String: String] = [:]
        for line in r.stdout.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count >= 3, f[0].hasPrefix("desa-php"), f[0].hasSuffix(".service") { out[String(f[0])] = String(f[2]) }
        }
        return out
    }

    /// desa's files of masters per tenant (pools, boot drop-ins, limits), found by their
    /// places and desa's header; none once they are gone.
    static func leftovers(_ c: Config, prefix: String) -> [String] {
        let fm = FileManager.default
        var out: [String] = []
        func mine(_ path: String) -> Bool {
            guard let text = AtomicFiles.read(path) else { return false }
            return Renderer.managedTenant(ofFileContent: Substring(text.prefix { $0 != "\n" })) != nil
        }
        for v in c.php.versions.keys.sorted() {
            let pools = dir(v, c) + "/pools"
            for n in (try? fm.contentsOfDirectory(atPath: pools)) ?? [] where PoolsCapability.isPoolName(n, prefix: prefix) && mine(pools + "/" + n) {
                out.append(pools + "/" + n)
            }
        }
        let wants = unitDir(c) + "/multi-user.target.d"
        for n in (try? fm.contentsOfDirectory(atPath: wants)) ?? [] where n.hasPrefix("desa-php-") && mine(wants + "/" + n) {
            out.append(wants + "/" + n)
        }
        out += TenantLimits.observe(c).filter { $0.value.owner != nil }.keys.sorted()
        return out.sorted()
    }

    /// The instance names a batch's changed files give: a pool written starts or reloads its
    /// master, a pool removed stops it.
    static func instances(of files: [ManagedFile], in dir: String) -> (reload: [String], stop: [String]) {
        var reload: [String] = [], stop: [String] = []
        for f in files where f.path.hasPrefix(dir + "/") && f.path.hasSuffix(".conf") {
            let name = String(f.path.dropFirst(dir.count + 1).dropLast(5))
            guard !name.contains("/") else { continue }
            if f.content == nil { stop.append(name) } else { reload.append(name) }
        }
        return (reload.sorted(), stop.sorted())
    }
}

extension Config {
    /// PHP `v` as the pools use it (`TenantMasters.effective`); throws naming the configured
    /// versions when `v` is not one.
    public func phpPool(_ v: String) throws -> PHPSettings.Version {
        TenantMasters.effective(v, try php.version(v), self)
    }
}
