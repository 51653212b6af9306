import Foundation
import GRDB

/// What `cert plan` (and `cert issue --dry-run`) shows: the bundles, each order and when
/// the ledger lets it go, and the names held out.
public struct CertPlan: Sendable {
    public var bundles: [PlannedBundle]
    public var scheduled: [ScheduledOrder]
    public var heldOut: [HeldOutName]
    public var refused: [PlanRefusal]
    /// The regency wildcard through DNS-01, when configured: nil when it needs nothing.
    public var wildcard: PlannedOrder?

    public var due: [ScheduledOrder] { scheduled.filter { !$0.isQueued } }
    public var queued: [ScheduledOrder] { scheduled.filter(\.isQueued) }

    public var json: JSON {
        .object([
            ("bundles", .array(bundles.map { b in
                .object([("id", .string(b.id)), ("members", .int(b.members.count)), ("names", .int(b.names.count)),
                         ("need", .string(CertPlan.describe(b.need))), ("held_out", .array(b.heldOut.map { .string($0) }))])
            })),
            ("orders", .array(scheduled.map { s in
                .object([("id", .string(s.order.id)), ("purpose", .string("\(s.order.purpose)")), ("names", .int(s.order.names.count)),
                         ("at", .string(Timestamp.format(s.at))), ("queued", .bool(s.isQueued)),
                         ("delayed_by", s.delayedBy.map { .string("\($0)") } ?? .null)])
            })),
            ("wildcard", wildcard.map { .string($0.names.joined(separator: " ")) } ?? .null),
            ("held_out", .array(heldOut.map { h in
                .object([("name", .string(h.name)), ("code", .string(h.code)), ("failures", .int(h.failures)), ("reason", .string(h.reason))])
            })),
            ("refused", .array(refused.map { .object([("code", .string($0.tenantID)), ("reason", .string($0.error.message))]) })),
        ])
    }

    static func describe(_ n: PlannedBundle.Need) -> String {
        switch n {
        case .none: return "none"
        case .issue: return "issue"
        case .reissue(let added): return "reissue (+\(added.count) names)"
        case .renew(let due): return "renew (due \(Timestamp.format(due)))"
        case .retire: return "retire"
        }
    }

    /// One line per order, for people.
    public var lines: [String] {
        var out: [String] = []
        for s in scheduled {
            let when = s.isQueued ? "queued until \(Timestamp.format(s.at)) (\(s.delayedBy.map { "\($0)" } ?? ""))" : "now"
            out.append("\(s.order.purpose) \(s.order.id): \(s.order.names.count) names, \(s.order.tenantCount) tenants, \(when)")
        }
        if let w = wildcard { out.append("wildcard: \(w.names.joined(separator: " ")) through DNS-01, now") }
        for h in heldOut { out.append("held out \(h.name) (\(h.code)): \(h.failures) failures: \(h.reason)") }
        for r in refused { out.append("refused \(r.tenantID): \(r.error.message)") }
        return out
    }
}

/// The outcome of `cert issue` / `cert renew`.
public struct CertReport: OperationReport {
    public struct Issued: Sendable {
        public var id: String
        public var names: Int
        public var notAfter: Date
        public var renewal: Bool
    }
    public var plan: CertPlan
    public var issued: [Issued] = []
    public var failed: [(id: String, reason: String)] = []
    public var heldOut: [(name: String, reason: String)] = []
    public var change: ChangeReport?

    public var exitStatus: Int32 {
        (!failed.isEmpty || change.map { $0.exitStatus != ExitStatus.ok } == true) ? ExitStatus.failed : ExitStatus.ok
    }

    public var summary: String {
        "\(issued.count) certificates issued (\(issued.map(\.names).reduce(0, +)) names), \(failed.count) failed, \(heldOut.count) names held out, \(plan.queued.count) orders queued"
    }

    public var didNothing: Bool {
        issued.isEmpty && failed.isEmpty && heldOut.isEmpty && (change?.plan.steps.isEmpty ?? true)
    }

    /// For people: each order's outcome, what is queued, and the summaries.
    public var lines: [String] {
        var out: [String] = []
        for i in issued { out.append("\(i.renewal ? "renewed" : "issued ") \(i.id): \(i.names) names, valid until \(Timestamp.format(i.notAfter))") }
        for h in heldOut { out.append("HELD OUT \(h.name): \(h.reason)") }
        for f in failed { out.append("FAILED \(f.id): \(f.reason)") }
        for q in plan.queued { out.append("queued \(q.order.id) until \(Timestamp.format(q.at)): \(q.delayedBy.map { "\($0)" } ?? "")") }
        out.append(summary)
        if let c = change { out.append(c.summary) }
        return out
    }

    public var json: JSON {
        .object([
            ("issued", .array(issued.map { .object([("id", .string($0.id)), ("names", .int($0.names)), ("not_after", .string(Timestamp.format($0.notAfter))), ("renewal", .bool($0.renewal))]) })),
            ("failed", .array(failed.map { .object([("id", .string($0.id)), ("reason", .string($0.reason))]) })),
            ("held_out", .array(heldOut.map { .object([("name", .string($0.name)), ("reason", .string($0.reason))]) })),
            ("plan", plan.json),
        ])
    }
}

/// One tenant's line in `cert list`.
public struct CertListing: Sendable {
    public var code: String
    public var slug: String
    public var names: [String]
    public var certificates: [CertRecord]
    public var uncovered: [String]
    public var heldOut: [HeldOutName]
    public var nextRenewal: Date?

    public func json(now: Date) -> JSON {
        .object([
            ("code", .string(code)), ("slug", .string(slug)), ("names", .array(names.map { .string($0) })),
            ("certificates", .array(certificates.map { r in
                .object([("id", .string(r.id)), ("source", .string(r.source.rawValue)),
                         ("names", .array(r.names.filter { n in names.contains { CertRecord.covers([n], $0) } }.map { .string($0) })),
                         ("not_after", r.notAfter.map { .string(Timestamp.format($0)) } ?? .null),
                         ("days_left", r.notAfter.map { .int(Int($0.timeIntervalSince(now) / 86400)) } ?? .null),
                         ("last_error", .str(r.lastError))])
            })),
            ("uncovered", .array(uncovered.map { .string($0) })),
            ("next_renewal", nextRenewal.map { .string(Timestamp.format($0)) } ?? .null),
            ("held_out", .array(heldOut.map { .object([("name", .string($0.name)), ("failures", .int($0.failures)), ("reason", .string($0.reason))]) })),
        ])
    }
}

extension Engine {
    func requireTLS() throws {
        guard config.tls.enabled else {
            throw DesaError(.config, "HTTPS is off: set tls.enabled = true in \(config.path) (and tls.directory, tls.contact)")
        }
    }

    var budget: Budget {
        var b = Budget.default
        b.certificatesPerRegisteredDomain = .init(config.tls.certificatesPerDomain, per: 7 * 86400)
        b.ordersPerAccount = .init(config.tls.ordersPerAccount, per: 3 * 3600)
        return b
    }

    /// The names each tenant's certificate must cover: its primary name (unless the regency
    /// wildcard covers it) and its aliases.
    func certTenants(_ tenants: [Tenant], _ aliases: [String: [String]]) -> [CertTenant] {
        let wildcard = config.tls.dns == .rfc2136
        var out = tenants.filter { $0.desired != .deleted }.compactMap { t in
            let names = (wildcard ? [] : [t.primaryDomain(config)]) + (aliases[t.code] ?? [])
            return names.isEmpty ? nil : CertTenant(id: t.code, slug: t.slug, names: names)
        }
        // The portal's host joins the bundles like a village with one name, unless the
        // regency's wildcard covers it: it covers exactly the names one label under the
        // domain, a village's slug or the portal's reserved one.
        if config.portal.enabled, !(wildcard && config.portalReservedSlug != nil) {
            out.append(CertTenant(id: PortalCapability.member, slug: PortalCapability.member, names: [config.portalHost]))
        }
        return out
    }

    /// Plans issuance from the state database; reads only.
    public func certPlan(only: Set<String>? = nil) throws -> CertPlan {
        try requireTLS()
        return try store.queue.read { db in try certPlan(db, only: only, now: now()).0 }
    }

    func certPlan(_ db: Database, only: Set<String>?, now: Date, force: Set<String> = []) throws -> (CertPlan, BundlePlan) {
        let tenants = try Tenant.order(Column("code")).fetchAll(db)
        let aliases = try Self.aliases(db)
        let records = try CertStore.records(db)
        let held = try HeldOutName.fetchAll(db)
        let existing = records.filter { $0.source == .acme && $0.id.hasPrefix("b") }.map { r in
            CertBundle(id: r.id, members: r.members, certificate: r.hasCertificate
                ? CertificateInfo(names: r.names, notBefore: r.notBefore!, notAfter: r.notAfter!, ariWindow: r.ariWindow) : nil)
        }
        let planner = try BundlePlanner(maxNamesPerBundle: config.tls.bundleSize)
        var plan = try planner.plan(tenants: certTenants(tenants, aliases), existing: existing,
                                    heldOut: Set(held.map(\.name)), now: now)
        // `cert renew --force`: those bundles renew now.
        for i in plan.bundles.indices where force.contains(plan.bundles[i].id) {
            if case .none = plan.bundles[i].need { plan.bundles[i].need = .renew(due: now) }
        }
        let byID = Dictionary(records.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var orders = plan.orders(renewalsCarryARIReplaces: false).map { o -> PlannedOrder in
            var o = o
            if o.purpose == .renewal, byID[o.id]?.ariCertID != nil, byID[o.id]?.ariStart != nil { o.replacesWithARI = true }
            return o
        }
        if let only {
            let wanted = Set(plan.bundles.filter { !Set($0.members).isDisjoint(with: only) }.map(\.id))
            let retryTenants = Dictionary(plan.retries.map { ("retry:" + $0.name, $0.tenantID) }, uniquingKeysWith: { a, _ in a })
            orders = orders.filter { wanted.contains($0.id) || only.contains(retryTenants[$0.id] ?? "") }
        }
        let ledger = IssuanceLedger(history: try CertStore.ledger(db, now: now), budget: budget, suffixes: try PublicSuffixList.system())
        let scheduled = ledger.schedule(orders: orders, now: now)
        var wildcard: PlannedOrder?
        if config.tls.dns == .rfc2136 {
            let w = records.first { $0.id == "wildcard" }
            let due = w.map { r in
                !r.hasCertificate || force.contains("wildcard")
                    || RenewalPolicy().isDue(notBefore: r.notBefore!, notAfter: r.notAfter!, ariWindow: r.ariWindow, now: now)
            } ?? true
            if due {
                wildcard = PlannedOrder(id: "wildcard", names: ["*." + config.domain], purpose: w?.hasCertificate == true ? .renewal : .issue,
                                        tenantCount: tenants.count)
            }
        }
        return (CertPlan(bundles: plan.bundles, scheduled: scheduled, heldOut: held.sorted { $0.name < $1.name },
                         refused: plan.refused, wildcard: wildcard), plan)
    }

    /// `cert issue` and `cert renew` (see `IssueCertificates`).
    public func issueCertificates(only: Set<String>? = nil, force: Set<String> = [], dryRun: Bool = false, renew: Bool = false,
                                  dns01: (any DNS01Responder)? = nil) throws -> CertReport {
        try requireTLS()
        return try perform(IssueCertificates(only: only, force: force, dryRun: dryRun, renew: renew, dns01: dns01, certDir: config.certDir))
    }

    /// The work of `IssueCertificates`, under its lock.
    func issue(only: Set<String>?, force: Set<String>, dryRun: Bool, dns01: (any DNS01Responder)?) throws -> CertReport {
        // A dry run asks the CA nothing and writes nothing (ARI windows are recorded).
        if !dryRun { try refreshRenewalInfo() }
        let (plan, bundles) = try store.queue.read { db in try certPlan(db, only: only, now: now(), force: force) }
        var report = CertReport(plan: plan)
        if dryRun { return report }
        let tls = config.tls
        let account = ACMEAccountOptions(contact: tls.contact.isEmpty ? [] : [tls.contact], eab: try eab())
        let challenges = ChallengeDirectory(path: config.acmeRoot + "/.well-known/acme-challenge")
        let byBundle = Dictionary(bundles.bundles.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let records = Dictionary(try store.queue.read { try CertStore.records($0) }.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let initial = report
        let outcome: CertReport
        do {
            outcome = try blockingAwait { [self] () async throws -> CertReport in
                var report = initial
                try await ACMEClient.with(directoryURL: tls.directoryURL, trustRoots: tls.trustedRoots.isEmpty ? nil : tls.trustedRoots,
                                          accountKeyPath: accountKeyPath, account: account) { client in
                    if plan.due.isEmpty && plan.wildcard == nil { return }
                    _ = try await client.account()
                    for s in plan.due {
                        let o = s.order
                        let members: [String]
                        if o.purpose == .retry {
                            let retry = bundles.retries.first { "retry:" + $0.name == o.id }
                            members = retry.map { [$0.tenantID] } ?? []
                        } else {
                            members = byBundle[o.id]?.members ?? []
                        }
                        let id = o.purpose == .retry ? "n-" + (o.names.first ?? "") : o.id
                        await self.order(client, id: id, names: o.names, members: members, purpose: o.purpose,
                                         replaces: o.replacesWithARI ? records[o.id]?.ariCertID : nil,
                                         challenges: challenges, dns01: nil, report: &report)
                    }
                    if let w = plan.wildcard {
                        guard let dns01 else {
                            report.failed.append(("wildcard", "tls.dns = \"rfc2136\" but no DNS-01 responder could be made"))
                            return
                        }
                        await self.order(client, id: "wildcard", names: w.names, members: [], purpose: w.purpose, replaces: nil,
                                         challenges: challenges, dns01: dns01, report: &report)
                    }
                }
                return report
            }
        } catch {
            noteOrdersNotPlaced(plan, retries: bundles.retries, members: byBundle.mapValues(\.members), error: error)
            throw error
        }
        report = outcome
        try pruneRetriedNames()
        // HTTPS for every tenant whose certificate is now in place: one apply, one reload.
        report.change = try apply()
        return report
    }

    /// The CA could not be reached, or refused the account, so no order went out: each
    /// certificate that was due says why (`cert list`), and the audit table has it.
    func noteOrdersNotPlaced(_ plan: CertPlan, retries: [RetryOrder], members: [String: [String]], error: Error) {
        let count = plan.due.count + (plan.wildcard == nil ? 0 : 1)
        guard count > 0 else { return }
        let reason = Applier.message(error), at = now()
        for s in plan.due {
            let retry = s.order.purpose == .retry ? retries.first { "retry:" + $0.name == s.order.id } : nil
            let id = retry.map { "n-" + $0.name } ?? s.order.id
            try? noteFailure(id, members: retry.map { [$0.tenantID] } ?? members[id] ?? [], reason: reason, at: at)
        }
        if let w = plan.wildcard { try? noteFailure(w.id, members: [], reason: reason, at: at) }
        record(op: "cert-fail", target: config.tls.directoryURL, outcome: "failed", detail: "\(count) orders not placed: \(reason)")
    }

    var accountKeyPath: String {
        let host = URL(string: config.tls.directoryURL)?.host ?? "ca"
        let port = URL(string: config.tls.directoryURL)?.port.map { "-\($0)" } ?? ""
        return config.certDir + "/account-" + host.filter { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" } + port + ".key"
    }

    func eab() throws -> ExternalAccountBinding? {
        guard let file = config.tls.eabHMACKeyFile, !config.tls.eabKid.isEmpty else { return nil }
        var st = stat()
        guard stat(file, &st) == 0, st.st_mode & 0o077 == 0 else {
            throw DesaError(.config, "tls.eab_hmac_key_file \(file) must exist and be mode 0600")
        }
        let key = (AtomicFiles.read(file) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        return ExternalAccountBinding(kid: config.tls.eabKid, hmacKey: key)
    }

    /// One order: issued, installed and recorded; or its failure recorded. A name the
    /// CA could not validate is held out and the order goes again once without it.
    func order(_ client: ACMEClient, id: String, names: [String], members: [String], purpose: PlannedOrder.Purpose,
               replaces: String?, challenges: ChallengeDirectory, dns01: (any DNS01Responder)?, report: inout CertReport) async {
        var names = names
        let profile = config.tls.profile.isEmpty ? nil : config.tls.profile
        for attempt in 0..<2 {
            guard !names.isEmpty else { return }
            let started = now()
            do {
                try writeLedger([LedgerEvent(time: started, kind: .order(renewalWithARI: replaces != nil))])
                let issued = try await client.issue(ACMEOrderRequest(names: names, replaces: replaces, profile: profile),
                                                    http01: challenges, dns01: dns01)
                var r = CertRecord(id: id, source: id == "wildcard" ? .dns : .acme, members: members, names: issued.names)
                r.notBefore = issued.notBefore; r.notAfter = issued.notAfter; r.serial = issued.serialHex
                r.ariCertID = issued.ariCertID; r.issuedAt = now(); r.lastAttempt = started
                try CertStore.install(r, chainPEM: issued.chainPEM, keyPEM: issued.keyPEM, config: config, store: store)
                try writeLedger([LedgerEvent(time: now(), kind: .certificate(names: issued.names, renewalWithARI: replaces != nil))],
                                releasing: issued.names)
                let renewal = purpose == .renewal
                report.issued.append(.init(id: id, names: issued.names.count, notAfter: issued.notAfter, renewal: renewal))
                let op = renewal ? "cert-renew" : "cert-issue"
                let msg = "certificate \(id) \(renewal ? "renewed" : "issued"): \(issued.names.count) names, valid until \(Timestamp.format(issued.notAfter))"
                logger.info("\(msg)")
                for code in members.isEmpty ? [""] : members {
                    var fields = ["MESSAGE": msg, "DESA_OP": op, "DESA_CERT": id, "DESA_CERT_NOT_AFTER": Timestamp.format(issued.notAfter),
                                  "PRIORITY": "\(JournalPriority.notice.rawValue)"]
                    if !code.isEmpty { fields["DESA_TENANT"] = code }
                    journal.send(fields)
                }
                record(op: op, target: id, outcome: "ok", detail: "\(issued.names.count) names, serial \(issued.serialHex), not after \(Timestamp.format(issued.notAfter))")
                return
            } catch let f as ACMEAuthorizationFailure where f.failed.count == names.count && names.count > 1 {
                // Every name failed: the server is not reachable for validation (a firewall,
                // DNS, nginx), not the names. Nothing is held out; the bundle fails.
                let at = now()
                try? writeLedger(f.failed.keys.sorted().map { LedgerEvent(time: at, kind: .authorizationFailure(name: $0)) })
                let first = f.failed.sorted { $0.key < $1.key }.first.map { "\($0.key): \($0.value)" } ?? ""
                let reason = "the CA could validate none of its \(names.count) names, so the server is not reachable for validation (first: \(first))"
                try? noteFailure(id, members: members, reason: reason, at: started)
                report.failed.append((id, reason))
                logger.error("certificate \(id) could not be issued: \(reason)")
                journal.send(["MESSAGE": "certificate \(id) could not be issued: \(reason)", "DESA_OP": "cert-fail", "DESA_CERT": id,
                              "PRIORITY": "\(JournalPriority.err.rawValue)"])
                record(op: "cert-fail", target: id, outcome: "failed", detail: reason)
                return
            } catch let f as ACMEAuthorizationFailure {
                let at = now()
                let owners = (try? nameOwners()) ?? [:]
                for (name, problem) in f.failed.sorted(by: { $0.key < $1.key }) {
                    let reason = "\(problem)"
                    let code = owners[name] ?? members.first ?? ""
                    try? holdOut(name, code: code, reason: reason, at: at)
                    report.heldOut.append((name, reason))
                    let msg = "certificate \(id): \(name) failed validation and is held out of it: \(reason)"
                    logger.warning("\(msg)")
                    journal.send(["MESSAGE": msg, "DESA_OP": "cert-fail", "DESA_CERT": id, "DESA_NAME": name, "DESA_TENANT": code,
                                  "PRIORITY": "\(JournalPriority.warning.rawValue)"])
                    record(op: "cert-fail", target: name, outcome: "failed", detail: reason)
                }
                // The rest of the bundle goes without them, once.
                names.removeAll { f.failed[$0] != nil }
                if attempt == 0 && id.hasPrefix("n-") { return }
                continue
            } catch {
                let reason = Applier.message(error)
                try? noteFailure(id, members: members, reason: reason, at: started)
                report.failed.append((id, reason))
                let msg = "certificate \(id) could not be \(purpose == .renewal ? "renewed" : "issued"): \(reason); the certificate serving keeps serving"
                logger.error("\(msg)")
                var fields = ["MESSAGE": msg, "DESA_OP": "cert-fail", "DESA_CERT": id, "PRIORITY": "\(JournalPriority.err.rawValue)"]
                if let c = members.first { fields["DESA_TENANT"] = c }
                journal.send(fields)
                record(op: "cert-fail", target: id, outcome: "failed", detail: reason)
                return
            }
        }
    }

    func writeLedger(_ events: [LedgerEvent], releasing names: [String] = []) throws {
        try store.queue.write { db in
            try CertStore.record(db, events)
            if !names.isEmpty { try HeldOutName.filter(names.contains(Column("name"))).deleteAll(db) }
        }
    }

    func holdOut(_ name: String, code: String, reason: String, at: Date) throws {
        try store.queue.write { db in
            try CertStore.record(db, [LedgerEvent(time: at, kind: .authorizationFailure(name: name))])
            var h = try HeldOutName.fetchOne(db, key: name) ?? HeldOutName(name: name, code: code, reason: reason, failures: 0, lastFailure: at)
            h.failures += 1; h.reason = reason; h.lastFailure = at
            try h.save(db)
        }
    }

    func noteFailure(_ id: String, members: [String], reason: String, at: Date) throws {
        try store.queue.write { db in
            var r = try CertRecord.fetchOne(db, key: id) ?? CertRecord(id: id, source: id == "wildcard" ? .dns : .acme, members: members)
            r.lastError = reason; r.lastAttempt = at
            try r.save(db)
        }
    }

    /// Which tenant each name belongs to (primary names and aliases).
    func nameOwners() throws -> [String: String] {
        try store.queue.read { db in
            var out: [String: String] = [:]
            for t in try Tenant.fetchAll(db) { out[t.primaryDomain(config)] = t.code }
            for (code, list) in try Self.aliases(db) { for a in list { out[a] = code } }
            return out
        }
    }

    /// A certificate for a retried name (`n-NAME`) is dropped once its bundle covers the name.
    func pruneRetriedNames() throws {
        let records = try store.queue.read { try CertStore.records($0) }
        let bundles = records.filter { $0.id.hasPrefix("b") && $0.hasCertificate }
        for r in records where r.id.hasPrefix("n-") && r.names.allSatisfy({ n in bundles.contains { $0.covers(n) } }) {
            _ = try store.queue.write { db in try CertRecord.deleteOne(db, key: r.id) }
        }
    }

    /// Asks the CA for each certificate's renewal window (ARI), where it has one.
    func refreshRenewalInfo() throws {
        let tls = config.tls
        let records = try store.queue.read { try CertStore.records($0) }.filter { $0.hasCertificate && $0.source != .imported && $0.source != .selfSigned }
        guard !records.isEmpty else { return }
        let chains = records.compactMap { r in AtomicFiles.read(r.chainPath(config)).map { (r, $0) } }
        let windows: [(String, RenewalInfo)] = (try? blockingAwait {
            try await ACMEClient.with(directoryURL: tls.directoryURL, trustRoots: tls.trustedRoots.isEmpty ? nil : tls.trustedRoots,
                                      accountKeyPath: self.accountKeyPath) { client in
                var out: [(String, RenewalInfo)] = []
                for (r, pem) in chains {
                    if let info = try await client.renewalInfo(for: pem) { out.append((r.id, info)) } else { break }
                }
                return out
            }
        }) ?? []
        guard !windows.isEmpty else { return }
        try store.queue.write { db in
            for (id, info) in windows {
                guard var r = try CertRecord.fetchOne(db, key: id) else { continue }
                r.ariStart = info.windowStart; r.ariEnd = info.windowEnd
                try r.update(db)
            }
        }
    }

    /// `cert list`: every tenant, what covers its names and until when.
    public func certList() throws -> [CertListing] {
        try requireTLS()
        return try store.queue.read { db in
            let tenants = try Tenant.order(Column("code")).fetchAll(db).filter { $0.desired != .deleted }
            let aliases = try Self.aliases(db)
            let records = try CertStore.records(db)
            let held = Dictionary(grouping: try HeldOutName.fetchAll(db), by: \.code)
            let policy = RenewalPolicy()
            return tenants.map { t in
                let names = [t.primaryDomain(config)] + (aliases[t.code] ?? [])
                let covering = records.filter { r in r.hasCertificate && (r.members.isEmpty || r.members.contains(t.code)) && names.contains { r.covers($0) } }
                let uncovered = names.filter { n in !covering.contains { $0.isValid(at: now()) && $0.covers(n) } }
                let next = covering.compactMap { r -> Date? in
                    guard let nb = r.notBefore, let na = r.notAfter, r.source == .acme || r.source == .dns else { return nil }
                    return policy.dueDate(notBefore: nb, notAfter: na, ariWindow: r.ariWindow)
                }.min()
                return CertListing(code: t.code, slug: t.slug, names: names, certificates: covering, uncovered: uncovered,
                                   heldOut: held[t.code] ?? [], nextRenewal: next)
            }
        }
    }

    /// `cert budget`: each registered domain's certificates in the window, what is left,
    /// and the orders planned against it.
    public func certBudget() throws -> (domains: [BucketUsage], orders: BucketUsage, planned: [String: Int]) {
        try requireTLS()
        let psl = try PublicSuffixList.system()
        return try store.queue.read { db in
            let ledger = IssuanceLedger(history: try CertStore.ledger(db, now: now()), budget: budget, suffixes: psl)
            let (plan, _) = try certPlan(db, only: nil, now: now())
            var planned: [String: Int] = [:]
            var domains = ledger.usage(now: now())
            for s in plan.scheduled where !s.order.replacesWithARI {
                for d in Set(s.order.names.compactMap { psl.rateLimitKey(for: $0) }) {
                    planned[d, default: 0] += 1
                    if !domains.contains(where: { $0.key == d }) { domains.append(ledger.usage(ofRegisteredDomain: d, now: now())) }
                }
            }
            return (domains.sorted { $0.key < $1.key }, ledger.orderUsage(now: now()), planned)
        }
    }
}

/// `cert issue` and `cert renew`: carries out the orders the ledger lets go now, then
/// renders HTTPS for every tenant with a valid certificate (one nginx reload). Only one
/// issuance runs at a time, under a lock of its own (the CA is slow: tenants can change
/// meanwhile). Each order is an audit row and journal entries of its own (`cert-issue`,
/// `cert-renew`, `cert-fail`); the run is one more, unless it had nothing to do.
public struct IssueCertificates: Operation {
    public var only: Set<String>?
    public var force: Set<String>
    public var dryRun: Bool
    public var renew: Bool
    public var dns01: (any DNS01Responder)?
    var certDir: String

    public var name: String { renew ? "cert renew" : "cert issue" }
    public var target: String { only.map { $0.sorted().joined(separator: " ") } ?? (force.isEmpty ? "all" : force.sorted().joined(separator: " ")) }
    public var lock: OperationLock { .file(certDir + "/.lock", timeout: 600) }

    public func run(_ context: OperationContext) throws -> CertReport {
        try context.engine.issue(only: only, force: force, dryRun: dryRun, dns01: dns01)
    }
}

/// Runs async work from synchronous code (desactl's commands) on a thread of its own and
/// waits for it. Never call it from a Swift concurrency thread.
public func blockingAwait<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var result: Result<T, Error>?
    Task.detached {
        do { result = .success(try await body()) } catch { result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try result!.get()
}
