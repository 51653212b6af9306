import ArgumentParser
import Foundation

public struct DatabaseCommand: ParsableCommand {

    public init() {}
    public static let configuration = CommandConfiguration(
        commandName: "db",
        abstract: "Tenants' MariaDB databases (needs mariadb.enabled = true).",
        discussion: """
        Each database has one user, granted that database only, from localhost and 127.0.0.1.
        Its password is in the tenant's home, in .my.cnf (mode 0600, the tenant's own): the
        tenant's PHP and `mariadb` run as the tenant read it. Passwords never appear in the
        journal, the audit table or --json output (db show --reveal prints it once, audited).
        """,
        subcommands: [Create.self, Show.self, RotatePassword.self, Delete.self]
    )

    public struct Create: ParsableCommand {

        public init() {}
        public static let configuration = CommandConfiguration(abstract: "Give a tenant a database, its user and its credentials file.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var change: ChangeOptions
        @Argument(help: "Slug or village code.") var tenant: String
        public func run() throws { try CLI.mutate(global, change, op: "db create", target: tenant) { try $0.createDatabase(tenant, dryRun: change.dryRun) } }
    }

    public struct Show: ParsableCommand {

        public init() {}
        public static let configuration = CommandConfiguration(abstract: "A tenant's database: name, user, server, size, tables.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Slug or village code.") var tenant: String
        @Flag(help: "Also print the password (recorded in the audit table).") var reveal = false
        @Flag(help: "Print JSON.") var json = false
        public func run() throws {
            try CLI.run {
                let i = try global.engine(json: true).databaseInfo(tenant, reveal: reveal)
                if json { CLI.printJSON(i.json); return }
                var rows = [
                    ["tenant", "\(i.tenant.slug) (\(i.tenant.code))"], ["database", i.record.name],
                    ["user", "\(i.record.user) @ \(DatabasesCapability.hosts.joined(separator: ", "))"],
                    ["server", i.address.description], ["state", i.exists ? i.record.desired.rawValue : "\(i.record.desired.rawValue), not on the server"],
                    ["size", ByteCount.show(i.sizeBytes)], ["tables", "\(i.tables)"], ["credentials", i.credentialsFile],
                ]
                if let p = i.password { rows.append(["password", p]) }
                for r in rows { print(r[0].padding(toLength: 12, withPad: " ", startingAt: 0) + r[1]) }
            }
        }
    }

    public struct RotatePassword: ParsableCommand {

        public init() {}
        public static let configuration = CommandConfiguration(
            commandName: "rotate-password",
            abstract: "Give a tenant's database user a new password, in the server and in its credentials file at once.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var change: ChangeOptions
        @Argument(help: "Slug or village code.") var tenant: String
        public func run() throws {
            try CLI.mutate(global, change, op: "db rotate-password", target: tenant) { try $0.rotateDatabasePassword(tenant, dryRun: change.dryRun) }
        }
    }

    public struct Delete: ParsableCommand {

        public init() {}
        public static let configuration = CommandConfiguration(abstract: "Dump a tenant's database into the archive, then drop it and its user.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var change: ChangeOptions
        @Argument(help: "Slug or village code.") var tenant: String
        public func run() throws { try CLI.mutate(global, change, op: "db delete", target: tenant) { try $0.deleteDatabase(tenant, dryRun: change.dryRun) } }
    }
}

enum ByteCount {
    static func show(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(n) B" : String(format: "%.1f", v) + " " + units[i]
    }
}
