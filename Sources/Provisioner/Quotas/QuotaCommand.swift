import ArgumentParser
import Foundation

public struct QuotaCommand: ParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        commandName: "quota",
        abstract: "Each village's share of the server: one quota for its files and database together (needs quota.backend).",
        subcommands: [Report.self, Set.self, Check.self]
    )

    public struct Report: ParsableCommand {
        public init() {}
        public static let configuration = CommandConfiguration(abstract: "Every tenant's use of its quota, worst first, from the filesystems' and MariaDB's own counters.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON.") var json = false
        public func run() throws {
            try CLI.run {
                let rows = try global.engine(json: true).quotaUsage()
                if json { CLI.printJSON(.array(rows.map(\.json))); return }
                let bar = isatty(1) != 0
                // Memory and CPU show only where the kernel holds them (a master per tenant).
                let limits = rows.contains { $0.limitsEnforced }
                print(Table.render(header: ["SLUG", "USED", "FILES", "DATABASE", "QUOTA", "INODES", "PROCS"] + (limits ? ["MEMORY", "CPU"] : []) + [""], rows: rows.map { u in
                    [u.slug, String(format: "%.0f%%", u.percent), ByteSize.readable(u.usedBytes), ByteSize.readable(u.dbBytes),
                     ByteSize(bytes: u.limitBytes).description, "\(u.usedInodes)/\(u.limitInodes)", "\(u.processes)"]
                    + (limits ? [ByteSize(bytes: u.memory).description, "\(u.cpu)%"] : [])
                    + [(bar ? Self.bar(u.percent) + " " : "") + (u.unmeasured ?? (u.dbBlocked ? "database closed to writes" : ""))]
                }))
                let over = rows.filter { $0.percent >= 100 }.count
                print("\(rows.count == 1 ? "1 tenant" : "\(rows.count) tenants"): \(over) at or over their quota")
            }
        }

        static func bar(_ percent: Double) -> String {
            let n = max(0, min(20, Int((percent / 5).rounded())))
            return "[" + String(repeating: "#", count: n) + String(repeating: ".", count: 20 - n) + "]"
        }
    }

    public struct Set: ParsableCommand {
        public init() {}
        public static let configuration = CommandConfiguration(
            abstract: "Set a tenant's quota (512MiB, 2GiB): a raise within twice its image's size takes effect at once while its site serves; never below what it uses. With a php-fpm master per tenant (production), also its PHP's memory, CPU and processes, applied to the running master.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var change: ChangeOptions
        @Argument(help: "Slug or village code.") var tenant: String
        // Taken as given, so that `-1` is refused as a size (exit 2), not as an unknown option.
        @Option(help: "Memory its PHP may use, all its processes together (512MiB); production with php.masters = \"tenant\".") var memory: String?
        @Option(help: "CPU its PHP may use, in percent of one core (50, 200); production with php.masters = \"tenant\".") var cpu: Int?
        @Option(help: "Processes its PHP may run at once; production with php.masters = \"tenant\".") var processes: Int?
        @Argument(parsing: .allUnrecognized, help: "The quota: whole bytes, KiB, MiB, GiB or TiB (2GiB).") var size: [String] = []
        public func validate() throws {
            let limits = memory != nil || cpu != nil || processes != nil
            if size.count > 1 || (size.isEmpty && !limits) { throw ValidationError("give one size, like 2GiB, or --memory, --cpu or --processes") }
        }
        public func run() throws {
            try CLI.mutate(global, change, op: "quota set", target: tenant) { e in
                // Every value is read and checked before anything is written: a bad one changes nothing.
                let quota = try size.first.map { try ByteSize(parsing: $0, what: "quota") }
                let mem = try memory.map { try ByteSize(parsing: $0, what: "--memory") }
                return try e.setQuota(tenant, size: quota, memory: mem, cpu: cpu, processes: processes, dryRun: change.dryRun)
            }
        }
    }

    public struct Check: ParsableCommand {
        public init() {}
        public static let configuration = CommandConfiguration(
            abstract: "Measure every tenant now and hold each database to its quota (what the agent does every quota.check_interval).")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON.") var json = false
        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: json)
                try e.requireQuotas()
                try CLI.report(try e.perform(QuotaCheck(engine: e)), json: json)
            }
        }
    }
}
