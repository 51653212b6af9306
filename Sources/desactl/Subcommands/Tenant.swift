import ArgumentParser
import Foundation
import Provisioner

struct TenantCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenant",
        abstract: "Villages hosted on this server.",
        subcommands: [Import.self, Create.self, List.self, Show.self, AliasCommand.self, Set.self,
                      Suspend.self, Resume.self, Delete.self]
    )
}

extension TenantCommand {
    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import villages from a Kemendagri CSV list (code,name,district_code,district_name,...,kind).",
            discussion: "Rows already imported are left as they are, so re-running an import is safe. Any invalid row stops the import unless --skip-invalid.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var change: ChangeOptions
        @Argument(help: "The CSV file.") var file: String
        @Option(help: "Site template for the new tenants.") var template: String?
        @Option(help: "PHP version for the new tenants.") var php: String?
        @Flag(help: "Import the valid rows even if some are rejected.") var skipInvalid = false
        @Flag(help: "Give each new village a MariaDB database (see desactl db).") var withDB = false
        @Option(parsing: .unconditional, help: "Each new village's quota, its files and database together (512MiB, 2GiB; default quota.default).") var quota: String?

        func run() throws {
            try CLI.run {
                let e = try global.engine(json: change.json)
                let size = try quota.map { try ByteSize(parsing: $0, what: "--quota") }
                let list = try VillageList.read(path: file, regency: e.config.regencyCode)
                let r = try e.importVillages(list, options: TenantOptions(template: template, php: php, withDB: withDB, quota: size),
                                             dryRun: change.dryRun, skipInvalid: skipInvalid)
                if change.json {
                    CLI.printJSON(r.json(slugs: try e.slugsByCode()))
                    if r.rejected > 0 && !skipInvalid { throw ExitCode(ExitStatus.refused) }
                    if let c = r.change, c.exitStatus != ExitStatus.ok { throw ExitCode(c.exitStatus) }
                    return
                }
                for row in r.rows where row.action == .rejected {
                    let who = [row.code, row.name.map { Quote.show($0) }].compactMap { $0 }.joined(separator: " ")
                    print("line \(row.line ?? 0): rejected \(who): \(row.reason ?? "")")
                }
                if r.rejected > 0 && !skipInvalid {
                    print("\(r.rejected) rows rejected; nothing was imported (fix them, or use --skip-invalid)")
                    throw ExitCode(ExitStatus.refused)
                }
                if change.dryRun || global.verbose {
                    for row in r.rows where row.action != .rejected {
                        print("\(row.action.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) \(row.code ?? "") \(row.domain ?? "")  \(row.name ?? "")")
                    }
                }
                let exists = r.rows.filter { $0.action == .exists }.count
                print("\(r.created) new villages, \(exists) already present, \(r.rejected) rejected")
                if let c = r.change { try CLI.report(c, engine: e, json: false, dryRun: change.dryRun) }
            }
        }
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create one village (or bring back a deleted one).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var change: ChangeOptions
        @Argument(help: "Kemendagri village code, e.g. 32.04.05.2001.") var code: String
        @Option(help: "The village's name.") var name: String
        @Option(help: "The kecamatan's name.") var district: String
        @Option(help: "desa, kelurahan or 'desa adat' (checked against the code).") var kind: VillageKind?
        @Option(help: "The DNS label to use instead of one made from the name.") var slug: String?
        @Option(help: "Site template: default, opensid, static, or an operator's own.") var template: String?
        @Option(help: "PHP version.") var php: String?
        @Flag(help: "Give the village a MariaDB database (see desactl db).") var withDB = false
        @Option(parsing: .unconditional, help: "Its quota, its files and database together (512MiB, 2GiB; default quota.default).") var quota: String?

        func run() throws {
            try CLI.mutate(global, change, op: "create", target: code) { e in
                let size = try quota.map { try ByteSize(parsing: $0, what: "--quota") }
                let v = try Village.validated(code: code, name: name, district: district, regency: e.config.regencyCode, kind: kind?.rawValue)
                return try e.create(v, slug: slug, options: TenantOptions(template: template, php: php, withDB: withDB, quota: size),
                                    dryRun: change.dryRun)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tenants.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Only tenants with this status: pending, active, suspended, failed, deleted.") var status: Tenant.Status?
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            try CLI.run {
                let filter = status
                let engine = try global.engine(json: true)
                if json {
                    FileHandle.standardOutput.write(Data(try engine.listJSON(status: filter) + [10]))
                    return
                }
                let views = try engine.list(status: filter)
                let rows = views.map { v in [v.tenant.code, v.tenant.slug, v.tenant.status.rawValue, v.tenant.kind.rawValue, v.tenant.name, v.tenant.districtName] }
                print(Table.render(header: ["CODE", "SLUG", "STATUS", "KIND", "NAME", "KECAMATAN"], rows: rows))
                print(views.count == 1 ? "1 tenant" : "\(views.count) tenants")
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one tenant.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Slug or village code.") var tenant: String
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            try CLI.run {
                let engine = try global.engine(json: true)
                if json { FileHandle.standardOutput.write(Data(try engine.showJSON(tenant) + [10])); return }
                let v = try engine.show(tenant)
                let t = v.tenant
                let rows: [(String, String)] = [
                    ("code", t.code), ("name", t.name), ("kind", t.kind.rawValue), ("kecamatan", "\(t.districtName) (\(t.districtCode))"),
                    ("slug", t.slug), ("domain", v.domain), ("aliases", v.aliases.isEmpty ? "-" : v.aliases.joined(separator: ", ")),
                    ("status", t.status.rawValue + (t.reason.map { ": \($0)" } ?? "")), ("desired", t.desired.rawValue),
                    ("template", t.template), ("php", t.php), ("user", "\(v.user) (uid \(t.uid))"), ("home", v.home),
                ]
                var more: [(String, String)] = []
                if engine.config.backup.enabled, let b = try? engine.backupList(t.code).first {
                    let age = b.record?.ageHours(now: engine.time.now()).map { String(format: "%.0f h ago", $0) }
                    more.append(("backup", b.record?.lastSuccessAt.map { "last good \(Timestamp.format($0)) (\(age ?? "?"), snapshot \(b.record?.lastSnapshot ?? "?"))" } ?? "never"))
                    if b.record?.lastOutcome == "failed" { more.append(("", "last attempt FAILED: \(b.record?.lastError ?? "?")")) }
                }
                if engine.config.quota.backend != .none, let u = try? engine.quotaUsage().first(where: { $0.code == t.code }) {
                    more.append(("quota", u.unmeasured.map { "\(ByteSize(bytes: u.limitBytes)); not measured: \($0)" }
                        ?? String(format: "%@ of %@ (%.1f%%): files %@, database %@; inodes %lld of %lld%@", ByteSize.readable(u.totalBytes),
                                  ByteSize(bytes: u.limitBytes).description, u.percent, ByteSize.readable(u.usedBytes), ByteSize.readable(u.dbBytes),
                                  u.usedInodes, u.limitInodes, u.dbBlocked ? "; database closed to writes" : "")))
                    more.append(("limits", u.limitsEnforced
                        ? "\(u.processes) processes, \(ByteSize(bytes: u.memory)) memory, \(u.cpu)% of one core (held by the kernel in \(TenantMasters.unit(t.php, user: v.user)))"
                        : "\(u.processes) processes per user (RLIMIT_NPROC); memory and CPU not limited here (see desactl config check)"))
                }
                for (k, val) in rows + more { print("\(k.padding(toLength: 10, withPad: " ", startingAt: 0)) \(val)") }
            }
        }
    }

    struct AliasCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "alias", abstract: "Extra domains of a tenant (e.g. its *.desa.id name).",
                                                        subcommands: [Add.self, Remove.self])
        struct Add: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Add DOMAIN to a tenant's server names.")
            @OptionGroup var global: GlobalOptions
            @OptionGroup var change: ChangeOptions
            @Argument(help: "Slug or village code.") var tenant: String
            @Argument(help: "e.g. cileunyikulon.desa.id") var domain: String
            func run() throws { try CLI.mutate(global, change, op: "alias add", target: tenant) { try $0.addAlias(tenant, domain: domain, dryRun: change.dryRun) } }
        }
        struct Remove: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Remove DOMAIN from a tenant.")
            @OptionGroup var global: GlobalOptions
            @OptionGroup var change: ChangeOptions
            @Argument(help: "Slug or village code.") var tenant: String
            @Argument var domain: String
            func run() throws { try CLI.mutate(global, change, op: "alias remove", target: tenant) { try $0.removeAlias(tenant, domain: domain, dryRun: change.dryRun) } }
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a tenant's site template or PHP version.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var change: ChangeOptions
        @Argument(help: "Slug or village code.") var tenant: String
        @Option(help: "Site template: default, opensid, static, or an operator's own.") var template: String?
        @Option(help: "PHP version, as configured in [php.versions].") var php: String?

        func validate() throws {
            if template == nil && php == nil { throw ValidationError("give --template and/or --php") }
        }
        func run() throws {
            try CLI.mutate(global, change, op: "set", target: tenant) { try $0.set(tenant, options: TenantOptions(template: template, php: php), dryRun: change.dryRun) }
        }
    }

    struct Suspend: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Answer 503 for a tenant; its files stay.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var change: ChangeOptions
        @Argument(help: "Slug or village code.") var tenant: String
        func run() throws { try CLI.mutate(global, change, op: "suspend", target: tenant) { try $0.suspend(tenant, dryRun: change.dryRun) } }
    }

    struct Resume: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Serve a suspended tenant again.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var change: ChangeOptions
        @Argument(help: "Slug or village code.") var tenant: String
        func run() throws { try CLI.mutate(global, change, op: "resume", target: tenant) { try $0.resume(tenant, dryRun: change.dryRun) } }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a tenant's vhost, pool and user; archive its files (or remove them with --purge).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var change: ChangeOptions
        @Argument(help: "Slug or village code.") var tenant: String
        @Flag(help: "Remove the files instead of archiving them.") var purge = false
        func run() throws { try CLI.mutate(global, change, op: purge ? "delete --purge" : "delete", target: tenant) { try $0.delete(tenant, purge: purge, dryRun: change.dryRun) } }
    }
}
