import ArgumentParser
import Foundation

public struct CertCommand: ParsableCommand {

    public init() {}
    public static let configuration = CommandConfiguration(
        commandName: "cert",
        abstract: "HTTPS certificates: bundled ACME orders within the CA's rate limits (needs tls.enabled = true).",
        discussion: """
        Tenants' names are bundled into certificates of up to tls.bundle_size names (100 at Let's
        Encrypt). Bundles are stable: a new village fills a bundle or starts a small one. A ledger
        of the CA's limits (per registered domain, from Debian's Public Suffix List) queues what
        would exceed the budget. A name the CA cannot validate is held out of its bundle and
        retried alone with backoff.
        """,
        subcommands: [List.self, Plan.self, Issue.self, Renew.self, Import.self, Budget.self]
    )

    public struct List: ParsableCommand {

        public init() {}
        public static let configuration = CommandConfiguration(abstract: "Each tenant's certificates: source, names, not-after, days left, next renewal, last error.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON.") var json = false
        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: true)
                let rows = try e.certList()
                let now = e.time.now()
                if json { CLI.printJSON(.array(rows.map { $0.json(now: now) })); return }
                var table: [[String]] = []
                for r in rows {
                    let certs = r.certificates.map { c in "\(c.id)(\(c.source.rawValue))" }.joined(separator: ",")
                    let notAfter = r.certificates.compactMap(\.notAfter).min()
                    let errors = (r.heldOut.map { "\($0.name): \($0.reason)" } + r.certificates.compactMap(\.lastError)).joined(separator: "; ")
                    table.append([r.slug, certs.isEmpty ? "-" : certs, notAfter.map { Timestamp.format($0) } ?? "-",
                                  notAfter.map { "\(Int($0.timeIntervalSince(now) / 86400))" } ?? "-",
                                  r.nextRenewal.map { Timestamp.format($0) } ?? "-",
                                  r.uncovered.isEmpty ? "" : "not covered: " + r.uncovered.joined(separator: " ") + (errors.isEmpty ? "" : " (\(errors))")])
                }
                print(Table.render(header: ["SLUG", "CERTIFICATE", "NOT AFTER", "DAYS", "NEXT RENEWAL", "NOTE"], rows: table))
                let covered = rows.filter { $0.uncovered.isEmpty }.count
                print("\(rows.count) tenants: \(covered) fully covered, \(rows.count - covered) with names on plain HTTP")
            }
        }
    }

    public struct Plan: ParsableCommand {

        public init() {}
        public static let configuration = CommandConfiguration(abstract: "The orders the next issuance would place, and when the ledger lets each go.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON.") var json = false
        public func run() throws {
            try CLI.run {
                let p = try global.engine(json: true).certPlan()
                if json { CLI.printJSON(p.json); return }
                print(p.lines.isEmpty ? "Nothing to issue: every bundle has a valid certificate." : p.lines.joined(separator: "\n"))
            }
        }
    }

    public struct Issue: ParsableCommand {

        public init() {}
        public static let configuration = CommandConfiguration(abstract: "Issue what the plan says is due now, then serve HTTPS (one nginx reload).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var change: ChangeOptions
        @Argument(help: "Slugs or village codes (only their bundles); none with --all.") var tenants: [String] = []
        @Flag(help: "Every bundle that needs a certificate.") var all = false
        public func validate() throws {
            if tenants.isEmpty != all { throw ValidationError("give tenants, or --all") }
        }

        /// The operation's report; with `--json` its apply's too. A dry run prints the plan.
        static func report(_ r: CertReport, engine: Engine, json: Bool, dryRun: Bool) throws {
            if json, let c = r.change, case .object(var fields) = r.json {
                fields.append(("change", c.json(slugs: try engine.slugsByCode())))
                CLI.printJSON(.object(fields))
                if r.exitStatus != ExitStatus.ok { throw ExitCode(r.exitStatus) }
                return
            }
            if dryRun && !json {
                print(r.plan.lines.isEmpty ? "Nothing to issue." : r.plan.lines.joined(separator: "\n"))
                print("(dry run: nothing was ordered)")
                return
            }
            try CLI.report(r, json: json)
        }
        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: change.json)
                let only = all ? nil : Set(try tenants.map { try e.show($0).tenant.code })
                try Self.report(try e.issueCertificates(only: only, dryRun: change.dryRun, dns01: try e.dnsResponder()), engine: e,
                                json: change.json, dryRun: change.dryRun)
            }
        }
    }

    public struct Renew: ParsableCommand {

        public init() {}
        public static let configuration = CommandConfiguration(abstract: "Renew certificates that are due (ARI window, or two thirds of the lifetime), or one now.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var change: ChangeOptions
        @Flag(help: "Every certificate that is due (what desa-agent does).") var due = false
        @Option(help: "Renew this tenant's bundle now, due or not (slug or village code).") var force: String?
        public func validate() throws {
            if due == (force != nil) { throw ValidationError("give --due or --force SLUG") }
        }
        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: change.json)
                var ids = Set<String>()
                if let force {
                    let code = try e.show(force).tenant.code
                    ids = Set(try e.certList().first { $0.code == code }?.certificates.map(\.id) ?? [])
                    if ids.isEmpty { throw DesaError(.notFound, "\(force) has no certificate to renew; desactl cert issue \(force)") }
                }
                let r = try e.issueCertificates(force: ids, dryRun: change.dryRun, renew: true, dns01: try e.dnsResponder())
                try Issue.report(r, engine: e, json: change.json, dryRun: change.dryRun)
            }
        }
    }

    public struct Import: ParsableCommand {

        public init() {}
        public static let configuration = CommandConfiguration(abstract: "Serve an operator's certificate for a tenant, or for the whole regency (--regency).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var change: ChangeOptions
        @Argument(help: "SLUG CERT KEY, or CERT KEY with --regency.") var args: [String]
        @Flag(help: "A certificate for the regency domain (a wildcard from the regency's CA).") var regency = false
        public func validate() throws {
            if args.count != (regency ? 2 : 3) { throw ValidationError(regency ? "give CERT KEY" : "give SLUG CERT KEY") }
        }
        public func run() throws {
            try CLI.run {
                let e = try global.engine(json: change.json)
                let (slug, cert, key) = regency ? (nil, args[0], args[1]) : (args[0], args[1], args[2])
                let r = try e.importCertificate(tenant: slug, certificate: cert, key: key, dryRun: change.dryRun)
                if change.json { CLI.printJSON(r.json) } else { print(r.summary) }
                if let c = r.change { try CLI.report(c, engine: e, json: false, dryRun: change.dryRun) }
            }
        }
    }

    public struct Budget: ParsableCommand {

        public init() {}
        public static let configuration = CommandConfiguration(abstract: "The CA's budget per registered domain: used in the window, left, and planned.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON.") var json = false
        public func run() throws {
            try CLI.run {
                let (domains, orders, planned) = try global.engine(json: true).certBudget()
                func refill(_ d: Date?) -> String { d.map { Timestamp.format($0) } ?? "-" }
                if json {
                    CLI.printJSON(.object([
                        ("domains", .array(domains.map { .object([("domain", .string($0.key)), ("capacity", .int($0.capacity)), ("used", .int($0.usedInWindow)),
                                                                 ("remaining", .int($0.remaining)), ("planned", .int(planned[$0.key] ?? 0)),
                                                                 ("next_refill", $0.nextRefill.map { .string(Timestamp.format($0)) } ?? .null)]) })),
                        ("orders", .object([("capacity", .int(orders.capacity)), ("used", .int(orders.usedInWindow)), ("remaining", .int(orders.remaining))])),
                    ]))
                    return
                }
                print(Table.render(header: ["REGISTERED DOMAIN", "USED", "LEFT", "PLANNED", "NEXT REFILL"], rows: domains.map {
                    [$0.key, "\($0.usedInWindow)/\($0.capacity)", "\($0.remaining)", "\(planned[$0.key] ?? 0)", refill($0.nextRefill)]
                }))
                print("orders: \(orders.usedInWindow)/\(orders.capacity) in the last 3 hours, \(orders.remaining) left")
            }
        }
    }
}
