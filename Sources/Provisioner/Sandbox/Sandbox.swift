import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A self-contained server under one directory: its own config, state, web roots and
/// nginx/php-fpm configs, with nginx and php-fpm run by desactl on loopback. The same
/// code as production; only the config differs. Users are real (from a separate prefix
/// and UID range), so `destroy` removes them too.
public enum Sandbox {
    public struct Options: Sendable {
        public var dir: String
        public var httpPort: Int = 8080
        public var domain: String = "bandungkab.go.id"
        public var regency: String = "32.04"
        public var userPrefix: String = "dsb"
        public var uidMin: Int = 310_000
        public var uidMax: Int = 359_999
        public var templates: String? = nil
        /// Run a MariaDB server of the sandbox's own (`--with-mariadb`), on this port of 127.0.0.1.
        public var withMariaDB = false
        public var mariadbPort = 3307
        /// Run Let's Encrypt's test CA (`--with-pebble`) on this port (and the three after
        /// it), and serve HTTPS on `httpsPort`.
        public var withPebble = false
        public var pebblePort = 14000
        public var httpsPort = 8443
        /// Hold each village to its quota (`--quota-backend image`), of this size by default.
        public var quotaBackend = QuotaSettings.Backend.none
        public var quota = ByteSize(bytes: 2 << 30)
        /// Back the villages up into `DIR/backups/repo` (`--with-backups`).
        public var withBackups = false
        public init(dir: String) { self.dir = dir }
    }

    /// Where the built-in templates are: `DESA_TEMPLATES`, else a `templates/` directory
    /// above the running executable (a source checkout), else `/usr/share/desa/templates`.
    public static func builtinTemplates() -> String {
        if let env = ProcessInfo.processInfo.environment["DESA_TEMPLATES"], !env.isEmpty { return env }
        var dir = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                      ?? CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<8 {
            let candidate = dir.appendingPathComponent("templates")
            if FileManager.default.fileExists(atPath: candidate.path + "/nginx/default.conf.mustache") { return candidate.path }
            dir = dir.deletingLastPathComponent()
        }
        return "/usr/share/desa/templates"
    }

    public static func config(for o: Options) -> Config {
        var c = Config()
        let d = o.dir
        c.path = d + "/desa.toml"
        c.mode = .sandbox
        c.regencyCode = o.regency
        c.domain = o.domain
        c.stateDir = d + "/state"
        c.webRoot = d + "/srv"
        c.archiveDir = d + "/state/archive"
        c.acmeRoot = d + "/state/acme"
        c.logDir = d + "/logs"
        c.templates = o.templates ?? builtinTemplates()
        c.userPrefix = o.userPrefix
        c.uidMin = o.uidMin
        c.uidMax = o.uidMax
        c.sysusersFile = d + "/state/sysusers.conf"
        c.nginx.mainConf = d + "/nginx/nginx.conf"
        c.nginx.prefix = d + "/nginx/"
        c.nginx.sitesDir = d + "/nginx/sites"
        c.nginx.pidFile = d + "/run/nginx.pid"
        c.nginx.listen = "127.0.0.1:\(o.httpPort)"
        c.nginx.probe = "127.0.0.1:\(o.httpPort)"
        c.nginx.service = ""
        c.nginx.errorLogFile = d + "/logs/nginx-error.log"
        c.php.versions = ["8.2": PHPSettings.Version(binary: "/usr/sbin/php-fpm8.2", mainConf: d + "/php/8.2/php-fpm.conf",
                                          poolDir: d + "/php/8.2/pool.d", socketDir: d + "/run/php",
                                          pidFile: d + "/run/php8.2-fpm.pid", service: "")]
        if o.withPebble { SandboxPebble.configure(&c, httpsPort: o.httpsPort, acmePort: o.pebblePort) }
        c.quota.backend = o.quotaBackend
        c.quota.default = o.quota
        if o.withBackups { c.backup.repository = d + "/backups/repo" }
        if o.withMariaDB {
            c.mariadb.enabled = true
            c.mariadb.socket = d + "/run/mariadb.sock"
            c.mariadb.port = o.mariadbPort
            c.mariadb.dataDir = d + "/mariadb"
            c.mariadb.pidFile = d + "/run/mariadb.pid"
            c.mariadb.service = ""
        }
        return c
    }

    /// Creates the sandbox directory and its config. Refuses a directory that is not
    /// empty or that the web server could not reach.
    public static func initialize(_ o: Options) throws -> Config {
        var o = o
        o.dir = URL(fileURLWithPath: o.dir).standardizedFileURL.path
        guard PathGrammar.isSafeAbsolute(o.dir) else {
            throw DesaError.invalid("sandbox directory \(Quote.show(o.dir)) may contain only letters, digits and / . _ -")
        }
        guard (1...65535).contains(o.httpPort) else { throw DesaError.invalid("--http-port must be 1-65535") }
        guard (1...65535).contains(o.mariadbPort), !o.withMariaDB || o.mariadbPort != o.httpPort else {
            throw DesaError.invalid("--mariadb-port must be 1-65535 and differ from --http-port")
        }
        if o.withPebble {
            let taken = [o.httpPort] + (o.withMariaDB ? [o.mariadbPort] : [])
            guard (1...65532).contains(o.pebblePort), (1...65535).contains(o.httpsPort), !taken.contains(o.httpsPort),
                  !taken.contains(where: { (o.pebblePort...(o.pebblePort + 3)).contains($0) }),
                  !(o.pebblePort...(o.pebblePort + 3)).contains(o.httpsPort) else {
                throw DesaError.invalid("--https-port and --pebble-port (it uses 4 ports from there) must be free ports that differ from the others")
            }
        }
        try VillageCode.validateRegency(o.regency)
        o.domain = try Names.validateDomain(o.domain)
        try Names.validateUserPrefix(o.userPrefix)
        let runner = SystemProcessRunner()
        let taken = try Users(runner: runner, passwdFile: "/etc/passwd", sysusersFile: "/dev/null").tenants(prefix: o.userPrefix)
        if let u = taken.first {
            throw DesaError(.conflict, "user prefix \(o.userPrefix) is already used on this machine (\(taken.count) users, e.g. \(u.name) uid \(u.uid)); a sandbox needs a prefix of its own: pass --user-prefix")
        }
        if let contents = try? FileManager.default.contentsOfDirectory(atPath: o.dir), !contents.isEmpty {
            throw DesaError(.conflict, "\(o.dir) is not empty; choose a new directory or destroy the old sandbox")
        }
        // Unix sockets hold at most 107 bytes of path.
        if (o.dir + "/run/php/" + o.userPrefix + "0000000000.sock").utf8.count > 100 {
            throw DesaError.invalid("sandbox directory \(o.dir) is too long for PHP-FPM socket paths; use a shorter one")
        }
        let c = config(for: o)
        // What is written must load: the options pass the same checks as any desa.toml.
        let text = try toml(c, options: o)
        _ = try Config.parse(text, source: c.path)
        try checkPorts(c, pebble: o.withPebble, ours: [], starting: false)
        try FileManager.default.createDirectory(atPath: o.dir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        try checkTraversable(o.dir)
        _ = try Renderer(config: c)  // the templates must be there
        try AtomicFiles.write([FileWrite(path: c.path, content: text, mode: 0o600)])
        try prepare(c)
        if c.mariadb.enabled { try installMariaDB(c, runner: runner) }
        if o.withPebble { try SandboxPebble.initialize(c, runner: runner) }
        return c
    }

    /// `mariadb-install-db` into the sandbox: system tables, root by unix-socket
    /// authentication (root on this host is the administrator), no test database.
    static func installMariaDB(_ c: Config, runner: ProcessRunning) throws {
        let install = "/usr/bin/mariadb-install-db"
        guard FileManager.default.isExecutableFile(atPath: install), FileManager.default.isExecutableFile(atPath: c.mariadb.serverBinary) else {
            throw DesaError(.config, "--with-mariadb needs MariaDB's server: apt-get install mariadb-server (scripts/install-deps.sh does)")
        }
        let r = try runner.run([install, "--no-defaults", "--datadir=" + c.mariadb.dataDir, "--user=root",
                                "--auth-root-authentication-method=socket", "--skip-test-db"])
        guard r.ok else { throw DesaError.system("mariadb-install-db failed: \(r.message)") }
        chmod(c.mariadb.dataDir, 0o700)
    }

    /// nginx workers run as www-data: every directory above the sandbox must let others pass.
    static func checkTraversable(_ dir: String) throws {
        var path = ""
        for part in dir.split(separator: "/") {
            path += "/" + part
            var st = stat()
            guard stat(path, &st) == 0 else { continue }
            if st.st_mode & 0o001 == 0 {
                throw DesaError.invalid("\(path) is not searchable by other users (mode \(String(st.st_mode & 0o777, radix: 8))), so nginx (www-data) could not reach the sandbox; choose a directory like /srv/desa-sandbox or /var/tmp/desa")
            }
        }
    }

    /// Writes the sandbox's own nginx.conf and php-fpm.conf and the directories they name.
    public static func prepare(_ c: Config) throws {
        let dir = (c.path as NSString).deletingLastPathComponent
        for sub in ["state", "srv", "nginx", "nginx/sites", "nginx/tmp", "run", "run/php", "logs"] {
            try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
        }
        chmod(dir + "/state", 0o711)
        let r = try Renderer(config: c)
        var files = [FileWrite(path: c.nginx.mainConf, content: try r.renderSandbox("nginx", [
            "dir": dir, "listen": c.nginx.listen, "pid_file": c.nginx.pidFile, "log_dir": c.logDir,
            "nginx_dir": dir + "/nginx", "sites_dir": c.nginx.sitesDir, "web_user": c.webGroup,
            "server_names_hash_bucket_size": c.nginx.serverNamesHashBucketSize,
        ]))]
        for (v, p) in c.php.versions {
            try FileManager.default.createDirectory(atPath: p.poolDir, withIntermediateDirectories: true)
            files.append(FileWrite(path: p.mainConf, content: try r.renderSandbox("php-fpm", [
                "dir": dir, "php_version": v, "pid_file": p.pidFile, "log_dir": c.logDir,
                "pool_dir": p.poolDir, "socket_dir": p.socketDir, "web_user": c.webGroup,
            ])))
        }
        try AtomicFiles.write(files)
    }

    /// The sandbox's desa.toml: the encoded config (every key, so none can be forgotten)
    /// under a short header.
    static func toml(_ c: Config, options o: Options) throws -> String {
        """
        # desa sandbox: every path lies under \(o.dir).
        # nginx and php-fpm are run by desactl on \(c.nginx.listen) (desactl sandbox start|stop).
        # Every key is written out; desactl config check --config \(c.path) explains a bad one.

        """ + (try c.toml())
    }

    static func requireSandbox(_ c: Config) throws {
        guard c.mode == .sandbox else {
            throw DesaError(.config, "\(c.path) is not a sandbox config (mode = \(c.mode.rawValue)); sandbox commands only touch sandboxes")
        }
    }

    public static func start(_ c: Config, runner: ProcessRunning = SystemProcessRunner()) throws {
        try requireSandbox(c)
        let s = ServiceControl(config: c, runner: runner)
        // Every port first: one that another process holds stops the start before anything
        // is written, started or ended.
        try checkPorts(c, pebble: SandboxPebble.configured(c), ours: ownedProcesses(c, s), starting: true)
        try prepare(c)
        for v in c.php.versions.keys.sorted() {
            let r = try s.test(.phpFPM(v, c))
            if !r.ok { throw DesaError(.checkFailed, "php-fpm \(v) configuration fails its check: \(r.message)") }
            try s.start(.phpFPM(v, c))
        }
        let r = try s.test(.nginx(c))
        if !r.ok { throw DesaError(.checkFailed, "nginx configuration fails its check: \(r.message)") }
        try s.start(.nginx(c))
        if c.mariadb.enabled { try s.start(.mariadb(c)) }
        try SandboxPebble.start(c, runner: runner)
    }

    public static func stop(_ c: Config, runner: ProcessRunning = SystemProcessRunner()) throws {
        try requireSandbox(c)
        let s = ServiceControl(config: c, runner: runner)
        s.stop(.nginx(c))
        for v in c.php.versions.keys.sorted() { s.stop(.phpFPM(v, c)) }
        if c.mariadb.enabled { s.stop(.mariadb(c)) }
        SandboxPebble.stop(c)
    }

    public struct Status: Sendable {
        public var nginxPID: Int32?
        public var php: [(String, Int32?)]
        /// nil when the sandbox has no MariaDB.
        public var mariadb: (address: String, pid: Int32?)?
        public var listen: String
        public var tenants: [String: Int]

        public var json: JSON {
            .object([
                ("listen", .string(listen)),
                ("nginx", .object([("running", .bool(nginxPID != nil)), ("pid", nginxPID.map { .int(Int($0)) } ?? .null)])),
                ("php_fpm", .array(php.map { v, pid in
                    .object([("version", .string(v)), ("running", .bool(pid != nil)), ("pid", pid.map { .int(Int($0)) } ?? .null)])
                })),
                ("mariadb", mariadb.map { m in .object([("running", .bool(m.pid != nil)), ("pid", m.pid.map { .int(Int($0)) } ?? .null),
                                                       ("address", .string(m.address))]) } ?? .null),
                ("tenants", .object(Tenant.Status.allCases.map { ($0.rawValue, .int(tenants[$0.rawValue] ?? 0)) })),
            ])
        }
    }

    public static func status(_ c: Config) throws -> Status {
        try requireSandbox(c)
        let s = ServiceControl(config: c, runner: SystemProcessRunner())
        var counts: [String: Int] = [:]
        if FileManager.default.fileExists(atPath: c.databasePath) {
            for t in try StateStore(path: c.databasePath).tenants() { counts[t.status.rawValue, default: 0] += 1 }
        }
        return Status(nginxPID: s.runningPID(.nginx(c)), php: c.php.versions.keys.sorted().map { ($0, s.runningPID(.phpFPM($0, c))) },
                      mariadb: c.mariadb.enabled ? (c.mariadb.address.description, s.runningPID(.mariadb(c))) : nil,
                      listen: c.nginx.listen, tenants: counts)
    }

    /// Stops the services, removes every tenant user of this sandbox and the whole directory.
    public static func destroy(_ c: Config, runner: ProcessRunning = SystemProcessRunner(),
                               progress: ProgressReporting = SilentProgress()) throws -> Int {
        try requireSandbox(c)
        let dir = (c.path as NSString).deletingLastPathComponent
        let held = try StateLock(path: c.lockPath)
        try stop(c, runner: runner)
        let users = Users(runner: runner, passwdFile: c.passwdFile, sysusersFile: c.sysusersFile)
        // Only the users this sandbox's own state recorded, by name and UID: another
        // sandbox or a person may use the same names.
        var recorded: [String: Int] = [:]
        if FileManager.default.fileExists(atPath: c.databasePath) {
            for t in try StateStore(path: c.databasePath).tenants() { recorded[t.userName(prefix: c.userPrefix)] = t.uid }
        }
        let mine = try users.tenants(prefix: c.userPrefix).filter { recorded[$0.name] == $0.uid && $0.home.hasPrefix(dir + "/") }
        for u in mine where u.uid >= 1000 {
            _ = try? Processes.killAll(uid: u.uid, gid: u.gid, timeout: 5)
        }
        progress.begin("users", total: mine.count)
        for u in mine {
            try users.delete(u.name)
            progress.advance(1)
        }
        progress.end()
        // The tenants' group, and the entries that closed the shared directories to it.
        if let g = getgrnam(Users.tenantsGroup(prefix: c.userPrefix)) {
            let gid = g.pointee.gr_gid
            for dir in c.quota.closedDirs {
                for (path, _) in QuotasCapability.closure(dir, needed: [c.webRoot, c.logDir])
                    where ACL.namedGroups(path)?[gid] != nil { CloseSharedDir.reopen(path, gid: gid, runner: runner) }
            }
            _ = try? runner.run(["/usr/sbin/groupdel", Users.tenantsGroup(prefix: c.userPrefix)])
        }
        // Quota images mounted at the homes: unmounted first (the deepest first), or the
        // removal would empty them under their mounts and leave the mounts busy.
        for m in Mounts.table().keys.filter({ $0.hasPrefix(dir + "/") }).sorted(by: { $0.count > $1.count }) {
            let r = try runner.run(["/bin/umount", m])
            if !r.ok { throw DesaError.system("cannot unmount \(m): \(r.message); nothing more was removed") }
        }
        withExtendedLifetime(held) {}
        do { try FileManager.default.removeItem(atPath: dir) } catch {
            throw DesaError.system("cannot remove \(dir): \(error.localizedDescription)")
        }
        return mine.count
    }
}
