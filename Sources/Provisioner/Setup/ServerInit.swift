import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// desa's version: `desactl --version`, `desa-agent --version`, and the Debian package's
/// upstream version (scripts/build-deb.sh reads it from here).
public enum DesaVersion {
    public static let string = "0.9.0"
}

/// `desactl init`: makes a server with Debian's nginx, php-fpm (and MariaDB) a desa server.
/// It writes the config (0600) and the nginx include, starts what must run, enables and
/// starts the agent, and checks the config. Run again, it changes nothing; it never
/// overwrites a config that says something else, and leaves other nginx sites alone.
public struct ServerInit {
    public enum TLSChoice: String, CaseIterable, Sendable { case letsencrypt, letsencryptStaging = "letsencrypt-staging", none }

    public struct Options: Sendable {
        public var regency: String
        public var domain: String
        public var withMariaDB = false
        public var tls = TLSChoice.none
        public var contact = ""
        public var dryRun = false
        public var configPath = "/etc/desa/desa.toml"
        /// Where the nginx include goes (Debian's nginx.conf includes conf.d/*.conf in http).
        public var nginxInclude = "/etc/nginx/conf.d/desa.conf"
        public var agentUnit = "desa-agent.service"
        public init(regency: String, domain: String) { self.regency = regency; self.domain = domain }
    }

    public var options: Options
    public var runner: any ProcessRunning
    /// What was done (or, in a dry run, would be), one line each.
    public private(set) var lines: [String] = []

    public init(_ options: Options, runner: any ProcessRunning = SystemProcessRunner()) {
        self.options = options; self.runner = runner
    }

    /// The config `init` writes for these options.
    public func configText() -> String {
        let o = options
        var t = """
        # Written by desactl init; edit freely (desactl config check validates it, and
        # desactl config reference lists every key). The package never overwrites it.
        mode = "production"

        [regency]
        code = \(TOMLWriter.quoted(o.regency))
        domain = \(TOMLWriter.quoted(o.domain))

        """
        if o.withMariaDB {
            t += "\n[mariadb]\nenabled = true        # the administrator signs in as root by unix socket\n"
        }
        if o.tls != .none {
            t += "\n[tls]\nenabled = true\ndirectory = \(TOMLWriter.quoted(o.tls.rawValue))\n"
            if !o.contact.isEmpty { t += "contact = \(TOMLWriter.quoted(o.contact))\n" }
        }
        return t
    }

    public mutating func run() throws {
        let o = options
        try VillageCode.validateRegency(o.regency)
        try Names.validateDomain(o.domain)
        if !o.contact.isEmpty, !o.contact.contains("@") || o.contact.contains(where: { $0.isWhitespace || $0 == "\"" }) {
            throw DesaError(.invalidInput, "--contact must be an e-mail address (got \(Quote.show(o.contact)))")
        }
        let wanted = configText()
        let config = try writeConfig(wanted)
        try nginxInclude(config)
        try service(config.php.versions[config.php.default]?.service ?? "php\(config.php.default)-fpm", "PHP-FPM")
        if config.mariadb.enabled { try mariadb(config) }
        try agent()
        if o.dryRun {
            lines.append("(dry run: nothing was changed)")
            return
        }
        // The config as every command will read it, and what it enforces.
        let checked = try Config.load(path: o.configPath)
        lines.append("config check: \(o.configPath) is valid")
        lines += QuotaSettings.enforcement(checked).map { "  " + $0 }
        lines += [
            "",
            "Next:",
            "  point *.\(checked.regency.domain) (or each village's name) at this server in DNS",
            "  desactl tenant import VILLAGES.csv --dry-run      # the regency's Kemendagri list; then without --dry-run",
        ]
        if checked.tls.enabled { lines.append("  desactl cert issue --all                           # HTTPS for every village") }
        if !checked.backup.enabled { lines.append("  set [backup] repository in \(o.configPath), then desactl backup init") }
        lines.append("  desactl health                                      # after the agent's first sweep")
    }

    /// The config: written when missing; left alone when it says the same regency; refused
    /// when it says another (init never overwrites an operator's file).
    mutating func writeConfig(_ wanted: String) throws -> Config {
        let path = options.configPath
        if FileManager.default.fileExists(atPath: path) {
            let existing = try Config.load(path: path)
            guard existing.regency.code == options.regency, existing.regency.domain == options.domain else {
                throw DesaError(.conflict, "\(path) already configures regency \(existing.regency.code) (\(existing.regency.domain)); "
                                + "init does not overwrite it: edit it, or move it away to start over")
            }
            lines.append("\(path): already configures regency \(options.regency) (\(options.domain)); left as it is")
            if options.withMariaDB != existing.mariadb.enabled {
                lines.append("  note: it has mariadb.enabled = \(existing.mariadb.enabled), and init changes no key: edit it if that is not what you want")
            }
            if (options.tls != .none) != existing.tls.enabled {
                lines.append("  note: it has tls.enabled = \(existing.tls.enabled), and init changes no key: edit it if that is not what you want")
            }
            return existing
        }
        let config = try Config.parse(wanted, source: path)
        if options.dryRun {
            lines.append("would write \(path) (0600)")
            return config
        }
        let dir = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        try AtomicFiles.write([FileWrite(path: path, content: wanted, mode: 0o600)])
        lines.append("wrote \(path) (0600)")
        return try Config.load(path: path)
    }

    /// The nginx include that puts the tenants' server blocks in nginx's http block. The
    /// server_names_hash_bucket_size line is left out when nginx's config already sets one.
    mutating func nginxInclude(_ c: Config) throws {
        let path = options.nginxInclude
        let dump = try runner.run([c.nginx.binary, "-T"])
        var setElsewhere = false, file = ""
        for line in dump.stdout.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("# configuration file ") { file = String(line.dropFirst("# configuration file ".count).dropLast()); continue }
            let words = line.split(whereSeparator: \.isWhitespace)
            if file != path, words.first == "server_names_hash_bucket_size" { setElsewhere = true }
        }
        var text = "# Written by desactl init: the villages' server blocks (desactl writes them in \(c.nginx.sitesDir)).\n"
        if setElsewhere {
            text += "# server_names_hash_bucket_size is set elsewhere in nginx's config: nginx.server_names_hash_bucket_size in desa.toml must match it.\n"
        } else {
            text += "server_names_hash_bucket_size \(c.nginx.serverNamesHashBucketSize);\n"
        }
        text += "include \(c.nginx.sitesDir)/*.conf;\n"
        let wrote: Bool
        if AtomicFiles.read(path) == text {
            lines.append("\(path): already includes \(c.nginx.sitesDir)")
            wrote = false
        } else if options.dryRun {
            lines.append("would write \(path) (include \(c.nginx.sitesDir)/*.conf) and reload nginx")
            return
        } else {
            let before = AtomicFiles.read(path)
            try FileManager.default.createDirectory(atPath: c.nginx.sitesDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            try AtomicFiles.write([FileWrite(path: path, content: text, mode: 0o644)])
            let test = try runner.run([c.nginx.binary, "-t"])
            guard test.ok else {
                if let before { try AtomicFiles.write([FileWrite(path: path, content: before, mode: 0o644)]) } else { unlink(path) }
                throw DesaError(.checkFailed, "nginx -t refused the config with \(path), so it was taken back: \(test.message)")
            }
            lines.append("wrote \(path) (include \(c.nginx.sitesDir)/*.conf)")
            wrote = true
        }
        try service(c.nginx.service.isEmpty ? "nginx" : c.nginx.service, "nginx", reload: wrote)
    }

    /// A service desa needs running: enabled and started when it is not running (or, with
    /// `mustBeEnabled`, not enabled); with `reload`, reloaded when it runs.
    mutating func service(_ unit: String, _ what: String, reload: Bool = false, mustBeEnabled: Bool = false) throws {
        let active = try runner.run(["/usr/bin/systemctl", "is-active", "--quiet", unit]).ok
        let enabled = try !mustBeEnabled || runner.run(["/usr/bin/systemctl", "is-enabled", "--quiet", unit]).ok
        if active && enabled {
            if reload, !options.dryRun {
                let r = try runner.run(["/usr/bin/systemctl", "reload", unit])
                guard r.ok else { throw DesaError(.checkFailed, "systemctl reload \(unit) failed: \(r.message)") }
                lines.append("\(what) (\(unit)) runs; reloaded")
            } else {
                lines.append("\(what) (\(unit))\(mustBeEnabled ? " is enabled and" : "") runs")
            }
            return
        }
        if options.dryRun {
            lines.append("would enable and start \(what) (\(unit))")
            return
        }
        let r = try runner.run(["/usr/bin/systemctl", "enable", "--now", unit])
        guard r.ok else {
            throw DesaError(.checkFailed, "\(what) (\(unit)) would not start: \(r.message) (journalctl -u \(unit) says why)")
        }
        lines.append("enabled and started \(what) (\(unit))")
    }

    /// MariaDB running, and its administrator reachable by unix socket as root.
    mutating func mariadb(_ c: Config) throws {
        try service(c.mariadb.service.isEmpty ? "mariadb" : c.mariadb.service, "MariaDB")
        if options.dryRun { return }
        let socket = c.mariadb.socket ?? "/run/mysqld/mysqld.sock"
        let r = try runner.run([c.mariadb.clientBinary, "--no-defaults", "--protocol=socket", "--socket=" + socket,
                                "--user=" + c.mariadb.adminUser, "--batch", "--skip-column-names", "-e", "SELECT VERSION()"])
        guard r.ok else {
            throw DesaError(.checkFailed, "MariaDB does not let \(c.mariadb.adminUser) in by unix socket (\(socket)): \(r.message); "
                            + "set mariadb.admin_credentials to a 0600 option file instead")
        }
        lines.append("MariaDB \(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)): \(c.mariadb.adminUser) signs in by unix socket")
    }

    /// The agent enabled and running (its unit waits for the config to exist; its start
    /// returns after READY=1, which it sends after its first sweep).
    mutating func agent() throws {
        try service(options.agentUnit, "desa-agent", mustBeEnabled: true)
    }
}
