import ArgumentParser
import Foundation
import Provisioner

struct SandboxCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox",
        abstract: "A self-contained server under one directory, served by nginx and php-fpm on 127.0.0.1.",
        subcommands: [Init.self, Start.self, Stop.self, Status.self, Destroy.self]
    )

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a sandbox in DIR and write DIR/desa.toml.")
        @Argument(help: "An empty or new directory, reachable by www-data (e.g. /srv/desa-sandbox).") var dir: String
        @Option(help: "Port nginx listens on, on 127.0.0.1.") var httpPort = 8080
        @Option(help: "The regency domain tenants live under.") var domain = "bandungkab.go.id"
        @Option(help: "The regency code (PP.RR) whose villages this sandbox hosts.") var regency = "32.04"
        @Option(help: "Prefix of tenant user names (prefix + 10 code digits).") var userPrefix = "dsb"
        @Option(help: "Lowest UID for tenant users.") var uidMin = 310_000
        @Option(help: "Highest UID for tenant users.") var uidMax = 359_999
        @Flag(help: "Run a MariaDB server of the sandbox's own (mariadb-install-db into DIR/mariadb) and enable databases.") var withMariadb = false
        @Option(help: "Port the sandbox's MariaDB listens on, on 127.0.0.1 (it also has a socket in DIR/run).") var mariadbPort = 3307
        @Flag(help: "Run Let's Encrypt's test CA (pebble) and its DNS test server on 127.0.0.1, and enable HTTPS with it.") var withPebble = false
        @Option(help: "Port pebble's ACME directory listens on (the next three are its management, DNS and DNS management ports).") var pebblePort = 14000
        @Option(help: "Port nginx serves HTTPS on, on 127.0.0.1.") var httpsPort = 8443
        @Option(help: "Hold each village to its quota: \"image\" (a filesystem image per village, loop-mounted at its home), or \"none\".") var quotaBackend = "none"
        @Option(parsing: .unconditional, help: "Each village's quota, its files and database together (with --quota-backend).") var quota = "2GiB"
        @Flag(help: "Back the villages up with restic into DIR/backups/repo (then: desactl backup init).") var withBackups = false

        func run() throws {
            try CLI.run {
                var o = Sandbox.Options(dir: dir)
                o.httpPort = httpPort; o.domain = domain; o.regency = regency
                o.userPrefix = userPrefix; o.uidMin = uidMin; o.uidMax = uidMax
                o.withMariaDB = withMariadb; o.mariadbPort = mariadbPort
                guard let backend = QuotaSettings.Backend(rawValue: quotaBackend), backend != .kernel else {
                    throw DesaError(.invalidInput, "--quota-backend must be image or none (got \(Quote.show(quotaBackend))); a sandbox cannot use the kernel's quotas of the host")
                }
                o.quotaBackend = backend
                o.quota = try ByteSize(parsing: quota, what: "--quota")
                o.withBackups = withBackups
                o.withPebble = withPebble; o.pebblePort = pebblePort; o.httpsPort = httpsPort
                let c = try Sandbox.initialize(o)
                print("""
                Sandbox ready in \((c.path as NSString).deletingLastPathComponent)
                  export DESA_CONFIG=\(c.path)
                  desactl sandbox start
                  desactl tenant import Tests/ProvisionerTests/Fixtures/villages-3204-bandung.csv
                """)
            }
        }
    }

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start the sandbox's nginx and php-fpm (and MariaDB, if it has one).")
        @OptionGroup var global: GlobalOptions
        func run() throws {
            try CLI.run {
                let c = try global.loadConfig()
                try Sandbox.start(c)
                print("nginx and php-fpm are running; sites answer on \(c.nginx.listen)")
                if c.mariadb.enabled { print("MariaDB is running on \(c.mariadb.address) and 127.0.0.1:\(c.mariadb.port)") }
                if SandboxPebble.configured(c) {
                    print("pebble (the test CA) is running at \(c.tls.directoryURL); HTTPS on \(c.tls.listen); its root: \(SandboxPebble.rootCertificate(c))")
                }
            }
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the sandbox's nginx, php-fpm and MariaDB.")
        @OptionGroup var global: GlobalOptions
        func run() throws {
            try CLI.run {
                try Sandbox.stop(try global.loadConfig())
                print("stopped")
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show whether nginx and php-fpm run, and tenant counts.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON.") var json = false
        func run() throws {
            try CLI.run {
                let s = try Sandbox.status(try global.loadConfig())
                if json { CLI.printJSON(s.json); return }
                print("nginx:   \(s.nginxPID.map { "running (pid \($0)) on \(s.listen)" } ?? "stopped")")
                for (v, pid) in s.php { print("php\(v):  \(pid.map { "running (pid \($0))" } ?? "stopped")") }
                if let m = s.mariadb { print("mariadb: \(m.pid.map { "running (pid \($0)) on \(m.address)" } ?? "stopped")") }
                let counts = Tenant.Status.allCases.map { "\(s.tenants[$0.rawValue] ?? 0) \($0.rawValue)" }.joined(separator: ", ")
                print("tenants: \(counts)")
            }
        }
    }

    struct Destroy: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the sandbox, remove its tenant users and its directory.")
        @OptionGroup var global: GlobalOptions
        func run() throws {
            try CLI.run {
                let c = try global.loadConfig()
                let n = try Sandbox.destroy(c, progress: TerminalProgress.forStderr())
                print("removed \(n) tenant users and \((c.path as NSString).deletingLastPathComponent)")
            }
        }
    }
}
