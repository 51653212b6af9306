import Foundation

/// A service whose configuration desa writes, as the config defines it: how to check a
/// new configuration, and how to put it into effect. In production systemd runs it
/// (`systemctl reload-or-restart UNIT`; for systemd itself, `daemon-reload`); in a
/// sandbox desactl runs its master (`start`) and signals it to reload.
public struct ServiceSpec: Sendable, Hashable, Comparable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        /// Reloads by SIGHUP; new workers replace the old ones asynchronously.
        case nginx
        /// Reloads by SIGUSR2 (re-executes itself and re-reads every pool).
        case phpFPM = "php-fpm"
        /// systemd itself, for unit files: `systemctl daemon-reload`.
        case systemd
        /// A MariaDB server: no files of desa's to reload; stops on SIGTERM.
        case mariadb
    }

    public var name: String
    public var kind: Kind
    /// The master's executable (to tell a live master from a reused pid).
    public var binary: String
    /// The command that checks the configuration; empty when there is none.
    public var check: [String]
    /// The command that starts the master in a sandbox: one that daemonizes (nginx), or,
    /// with `foreground`, one that stays in the foreground and is run under setsid.
    public var start: [String]
    /// The master stays in the foreground: desa knows its pid from starting it. A
    /// daemonizing php-fpm forks again at each reload and so changes its pid; mariadbd
    /// does not daemonize at all.
    public var foreground: Bool
    public var pidFile: String
    /// The systemd unit in production; empty in a sandbox.
    public var unit: String
    /// The sandbox's file that the master's command line names (its configuration): part
    /// of what tells the master desa started from any other process of the same program.
    public var argument: String?
    /// The HOST:PORT addresses the master binds in a sandbox, checked before it starts:
    /// a port another process holds is reported, never taken over.
    public var listens: [String]
    /// The directory of its Unix sockets (php-fpm): a socket left there by a master that
    /// was killed keeps a new one from starting.
    public var socketDir: String?
    /// The service's own error log, quoted when a reload does not take.
    public var errorLog: String?
    /// A Unix socket that accepts connections once the service is ready (a sandbox's
    /// start waits for it).
    public var readySocket: String?
    /// Production, a template `unit` (`desa-php8.2-fpm@.service`): the directory whose
    /// `NAME.conf` files name its instances. A change there reloads or starts the instance
    /// `NAME`; a removal stops it.
    public var instances: String?

    public init(name: String, kind: Kind, binary: String = "", check: [String] = [], start: [String] = [], foreground: Bool = false,
                pidFile: String = "", unit: String = "", argument: String? = nil, listens: [String] = [], socketDir: String? = nil,
                errorLog: String? = nil, readySocket: String? = nil, instances: String? = nil) {
        self.instances = instances
        self.name = name; self.kind = kind; self.binary = binary; self.check = check; self.start = start
        self.foreground = foreground; self.pidFile = pidFile; self.unit = unit; self.argument = argument
        self.listens = listens; self.socketDir = socketDir; self.errorLog = errorLog; self.readySocket = readySocket
    }

    /// An instance of a template `unit` (`desa-php8.2-fpm@.service` and `desa3204052001`:
    /// `desa-php8.2-fpm@desa3204052001.service`); `*` names every loaded one.
    public func instance(_ name: String) -> String { unit.replacingOccurrences(of: "@.", with: "@\(name).") }

    /// Where a sandbox records the master it started (`StartedProcess`), beside its pid file.
    public var recordFile: String {
        guard !pidFile.isEmpty else { return "" }
        return (pidFile.hasSuffix(".pid") ? String(pidFile.dropLast(4)) : pidFile) + ".started.json"
    }

    public static func < (a: ServiceSpec, b: ServiceSpec) -> Bool { a.name < b.name }
    public var description: String { name }

    /// systemd itself: unit files desa writes (backups, the agent) take effect through
    /// `daemon-reload`. A sandbox has no service manager of its own, so there it has none.
    public static func systemd(_ config: Config) -> ServiceSpec {
        ServiceSpec(name: "systemd", kind: .systemd, unit: config.mode == .production ? "daemon-reload" : "")
    }
}
