import Foundation

/// A tenant as certificate planning sees it: its names, the first being the primary.
public struct CertTenant: Sendable, Equatable, Hashable, Codable {
    public var id: String
    public var slug: String
    /// The names the tenant's site answers to, primary first
    /// (`cileunyi-kulon.bandungkab.go.id`, then aliases like `cileunyikulon.desa.id`).
    public var names: [String]

    public init(id: String, slug: String, names: [String]) {
        self.id = id
        self.slug = slug
        self.names = names
    }
}

/// What is known about the certificate a bundle currently has.
public struct CertificateInfo: Sendable, Equatable, Hashable, Codable {
    /// The names the certificate covers.
    public var names: [String]
    public var notBefore: Date
    public var notAfter: Date
    /// The CA's ARI renewal window, when fetched.
    public var ariWindow: RenewalWindow?

    public init(names: [String], notBefore: Date, notAfter: Date, ariWindow: RenewalWindow? = nil) {
        self.names = names
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.ariWindow = ariWindow
    }
}

/// A certificate bundle as stored: an id (`b001`), the tenants it serves, and its current
/// certificate if one was issued.
public struct CertBundle: Sendable, Equatable, Hashable, Codable {
    public var id: String
    public var members: [String]
    public var certificate: CertificateInfo?

    public init(id: String, members: [String], certificate: CertificateInfo? = nil) {
        self.id = id
        self.members = members
        self.certificate = certificate
    }
}

/// One bundle in a plan: who is in it, which names its certificate should cover, and
/// what has to happen.
public struct PlannedBundle: Sendable, Equatable {
    public enum Need: Sendable, Equatable, Hashable {
        /// The current certificate covers every wanted name (perhaps more: names of
        /// tenants that left, or held-out names, stay on it harmlessly) and is not due.
        case none
        /// No certificate yet.
        case issue
        /// The current certificate lacks these names (in bundle order): order a new one.
        case reissue(added: [String])
        /// The certificate covers every wanted name but is due for renewal since `due`.
        case renew(due: Date)
        /// No member is left: nothing to order. The record may be deleted; its certificate
        /// is harmless until it expires.
        case retire
    }

    public var id: String
    /// True when the planner opened this bundle (the caller stores it).
    public var isNew: Bool
    /// Member tenant ids, sorted.
    public var members: [String]
    /// The names a certificate for this bundle should cover now: the members' names in
    /// member order, each member's in its own order, held-out names omitted.
    public var names: [String]
    public var need: Need
    /// Names the current certificate covers that are no longer wanted (tenants gone,
    /// names held out); they leave at the next order, which is never forced for them.
    public var staleNames: [String]
    /// Members' names held out of this bundle (each planned as its own retry order).
    public var heldOut: [String]
    /// When the current certificate falls due (nil without a certificate).
    public var renewalDue: Date?
    /// The current certificate from the input, its names normalised and sorted.
    public var certificate: CertificateInfo?

    /// The record to store for this bundle (members as planned, certificate as it is).
    public var record: CertBundle { CertBundle(id: id, members: members, certificate: certificate) }
}

/// A held-out name, to be ordered alone (the ledger decides when, with backoff).
public struct RetryOrder: Sendable, Equatable, Hashable, Codable {
    public var name: String
    public var tenantID: String
    public var bundleID: String
}

/// A tenant the planner could not place, and why.
public struct PlanRefusal: Sendable, Equatable {
    public var tenantID: String
    public var error: DesaError
}

public struct BundlePlan: Sendable, Equatable {
    /// Every bundle, existing and new, in bundle-id order.
    public var bundles: [PlannedBundle]
    /// Held-out names, sorted: each is retried as a single-name order.
    public var retries: [RetryOrder]
    /// Tenants refused (too many names, a name already claimed, no names, a malformed name).
    public var refused: [PlanRefusal]
    /// Held-out names that belong to no planned tenant (the caller may forget them).
    public var unknownHeldOut: [String]

    /// The bundles that need an order now.
    public var changed: [PlannedBundle] { bundles.filter { $0.need != .none && $0.need != .retire } }

    /// The orders this plan calls for, for `IssuanceLedger.schedule`. A renewal carries
    /// ARI `replaces` (and is exempt from the new-orders and per-domain limits) only when
    /// `renewalsCarryARIReplaces` is true — the CA supports ARI and the client sends it.
    /// Reissues (the name set grows) are never counted as exempt.
    public func orders(renewalsCarryARIReplaces: Bool) -> [PlannedOrder] {
        var out: [PlannedOrder] = []
        for b in bundles {
            switch b.need {
            case .none, .retire: continue
            case .issue:
                out.append(PlannedOrder(id: b.id, names: b.names, purpose: .issue, tenantCount: b.members.count))
            case .reissue:
                out.append(PlannedOrder(id: b.id, names: b.names, purpose: .reissue, tenantCount: b.members.count))
            case .renew(let due):
                out.append(PlannedOrder(id: b.id, names: b.names, purpose: .renewal, tenantCount: b.members.count,
                                        renewalDue: due, replacesWithARI: renewalsCarryARIReplaces))
            }
        }
        for r in retries {
            out.append(PlannedOrder(id: "retry:" + r.name, names: [r.name], purpose: .retry, tenantCount: 1))
        }
        return out
    }
}

/// Groups tenants' names into certificate bundles of at most `maxNamesPerBundle` names,
/// changing as little as possible from one plan to the next.
///
/// Rules:
/// - A tenant's names stay together in one bundle; its slot counts all its names,
///   held-out ones included, so a name that validates later fits without moving anyone.
/// - Existing bundles keep their members. Members no longer wanted are dropped; that
///   alone does not force an order (the old certificate covers the names harmlessly, and
///   the next order for the bundle omits them).
/// - A member whose names grew past the room in its bundle (or every member past a
///   lowered `maxNamesPerBundle`) is moved out, members leaving in descending id order
///   until the rest fit, and placed like a new tenant.
/// - New tenants, in id order, go to the first bundle (in id order) with room; when none
///   has room a new bundle is opened with the next free id (`b001`, `b002`, …).
/// - Held-out names are left out of their tenant's bundle and planned as retries.
/// - A name claimed by two tenants goes to the one already in a bundle, else to the
///   lower id; the other tenant is refused. A tenant with more names than a bundle
///   holds is refused. Refusals leave the rest of the plan intact.
/// - The result depends only on the contents of the input, never on its order.
public struct BundlePlanner: Sendable, Equatable {
    public let maxNamesPerBundle: Int
    public var renewal: RenewalPolicy

    public init(maxNamesPerBundle: Int = 100, renewal: RenewalPolicy = RenewalPolicy()) throws {
        guard maxNamesPerBundle >= 1 else {
            throw DesaError(.invalidInput, "a certificate bundle must hold at least one name, not \(maxNamesPerBundle)")
        }
        self.maxNamesPerBundle = maxNamesPerBundle
        self.renewal = renewal
    }

    public func plan(tenants: [CertTenant], existing: [CertBundle], heldOut: Set<String> = [], now: Date) throws -> BundlePlan {
        let cap = maxNamesPerBundle

        // Bundles in id order; ids unique.
        let bundles = existing.sorted { BundlePlanner.bundleIDLess($0.id, $1.id) }
        for i in bundles.indices.dropFirst() where bundles[i].id == bundles[i - 1].id {
            throw DesaError(.invalidInput, "bundle id \(bundles[i].id) appears twice in the stored bundles")
        }
        // Which bundle a tenant belongs to: the first (in id order) that lists it.
        var memberOf: [String: Int] = [:]
        for (bi, b) in bundles.enumerated() {
            for m in b.members where memberOf[m] == nil { memberOf[m] = bi }
        }

        // Tenants in id order; ids unique.
        let sortedTenants = tenants.sorted { $0.id < $1.id }
        for i in sortedTenants.indices.dropFirst() where sortedTenants[i].id == sortedTenants[i - 1].id {
            throw DesaError(.invalidInput, "tenant id \(sortedTenants[i].id) appears twice in the tenants to plan")
        }

        // Claim names: members of bundles first, then by id.
        var refused: [PlanRefusal] = []
        var owner: [String: String] = [:]
        var accepted: [String: [String]] = [:]  // tenant id -> normalised names
        let claimOrder = sortedTenants.filter { memberOf[$0.id] != nil } + sortedTenants.filter { memberOf[$0.id] == nil }
        for t in claimOrder {
            var names: [String] = []
            var seen = Set<String>()
            var problem: DesaError?
            for raw in t.names {
                guard let n = PublicSuffixList.normalize(raw) else {
                    problem = DesaError(.invalidInput, "tenant \(t.id) has a malformed name \"\(raw)\"")
                    break
                }
                if seen.insert(n).inserted { names.append(n) }
            }
            if problem == nil {
                if names.isEmpty {
                    problem = DesaError(.invalidInput, "tenant \(t.id) has no names to put on a certificate")
                } else if names.count > cap {
                    problem = DesaError(.invalidInput, "tenant \(t.id) has \(names.count) names, more than the \(cap) a certificate bundle holds; its names must stay together, so it cannot be placed")
                } else if let clash = names.first(where: { owner[$0] != nil }) {
                    problem = DesaError(.conflict, "tenant \(t.id) wants the name \(clash), which tenant \(owner[clash]!) already has")
                }
            }
            if let problem {
                refused.append(PlanRefusal(tenantID: t.id, error: problem))
                continue
            }
            for n in names { owner[n] = t.id }
            accepted[t.id] = names
        }
        refused.sort { $0.tenantID < $1.tenantID }

        // Held-out names, normalised.
        var held = Set<String>()
        var unknownHeld: [String] = []
        for h in heldOut {
            guard let n = PublicSuffixList.normalize(h), owner[n] != nil else { unknownHeld.append(h); continue }
            held.insert(n)
        }
        unknownHeld.sort()

        // Existing bundles keep their members, as far as they fit.
        var members: [[String]] = []
        var used: [Int] = []
        var pending: [String] = []
        for (bi, b) in bundles.enumerated() {
            var kept = Array(Set(b.members.filter { accepted[$0] != nil && memberOf[$0] == bi })).sorted()
            var total = kept.reduce(0) { $0 + accepted[$1]!.count }
            while total > cap, let last = kept.popLast() {
                total -= accepted[last]!.count
                pending.append(last)
            }
            members.append(kept)
            used.append(total)
        }
        for t in sortedTenants where accepted[t.id] != nil && memberOf[t.id] == nil { pending.append(t.id) }
        pending.sort()

        // New bundle ids continue after the highest numbered "b<digits>" id.
        let taken = Set(bundles.map(\.id))
        var nextNumber = (bundles.compactMap { BundlePlanner.bundleNumber($0.id) }.max() ?? 0) + 1
        func newID() -> String {
            while true {
                let digits = String(nextNumber)
                let id = "b" + String(repeating: "0", count: max(0, 3 - digits.count)) + digits
                nextNumber += 1
                if !taken.contains(id) { return id }
            }
        }

        // First fit, in bundle-id order, through a max-tree of free room.
        var fit = FirstFit(capacity: bundles.count + pending.count)
        for (i, u) in used.enumerated() { fit.open(i, free: cap - u) }
        var newIDs: [String] = []
        for t in pending {
            let need = accepted[t]!.count
            let index: Int
            if let i = fit.first(atLeast: need) {
                index = i
            } else {
                index = members.count
                members.append([])
                used.append(0)
                newIDs.append(newID())
                fit.open(index, free: cap)
            }
            members[index].append(t)
            used[index] += need
            fit.set(index, free: cap - used[index])
        }

        // What each bundle needs.
        var planned: [PlannedBundle] = []
        var retries: [RetryOrder] = []
        for index in members.indices {
            let isNew = index >= bundles.count
            let id = isNew ? newIDs[index - bundles.count] : bundles[index].id
            let memberIDs = members[index].sorted()
            var names: [String] = []
            var heldHere: [String] = []
            for m in memberIDs {
                for n in accepted[m]! {
                    if held.contains(n) {
                        heldHere.append(n)
                        retries.append(RetryOrder(name: n, tenantID: m, bundleID: id))
                    } else {
                        names.append(n)
                    }
                }
            }
            // The certificate as given, its names normalised and sorted.
            var cert = isNew ? nil : bundles[index].certificate
            if let given = cert?.names { cert?.names = Set(given.map { PublicSuffixList.normalize($0) ?? $0 }).sorted() }
            var need = PlannedBundle.Need.none
            var stale: [String] = []
            var due: Date?
            if let cert {
                let covered = Set(cert.names)
                let wanted = Set(names)
                stale = covered.subtracting(wanted).sorted()
                let added = names.filter { !covered.contains($0) }
                due = renewal.dueDate(notBefore: cert.notBefore, notAfter: cert.notAfter, ariWindow: cert.ariWindow)
                if memberIDs.isEmpty {
                    need = .retire
                } else if !added.isEmpty {
                    need = .reissue(added: added)
                } else if let due, now >= due, !names.isEmpty {
                    need = .renew(due: due)
                }
            } else if memberIDs.isEmpty {
                need = .retire
            } else if !names.isEmpty {
                need = .issue
            }
            planned.append(PlannedBundle(id: id, isNew: isNew, members: memberIDs, names: names, need: need,
                                         staleNames: stale, heldOut: heldHere, renewalDue: due, certificate: cert))
        }
        retries.sort { $0.name < $1.name }
        return BundlePlan(bundles: planned, retries: retries, refused: refused, unknownHeldOut: unknownHeld)
    }

    /// The number in a `b<digits>` id.
    static func bundleNumber(_ id: String) -> Int? {
        guard id.first == "b", id.count > 1, id.dropFirst().allSatisfy(\.isASCIIDigitChar) else { return nil }
        return Int(id.dropFirst())
    }

    /// Bundle-id order: `b<digits>` ids by number (so `b999` < `b1000`), before any
    /// other id; others by string.
    static func bundleIDLess(_ a: String, _ b: String) -> Bool {
        switch (bundleNumber(a), bundleNumber(b)) {
        case let (x?, y?): return x != y ? x < y : a < b
        case (_?, nil): return true
        case (nil, _?): return false
        case (nil, nil): return a < b
        }
    }
}

private extension Character {
    var isASCIIDigitChar: Bool { isASCII && isNumber }
}

/// A max segment tree over bundle slots: the first slot with at least `k` free names in
/// O(log n), so first-fit stays fast for the whole country (tens of thousands of tenants).
struct FirstFit {
    private var size = 1
    private var tree: [Int]

    init(capacity: Int) {
        while size < max(1, capacity) { size *= 2 }
        tree = Array(repeating: 0, count: 2 * size)
    }

    mutating func open(_ index: Int, free: Int) { set(index, free: free) }

    mutating func set(_ index: Int, free: Int) {
        var i = index + size
        tree[i] = free
        i /= 2
        while i >= 1 {
            tree[i] = max(tree[2 * i], tree[2 * i + 1])
            i /= 2
        }
    }

    func first(atLeast k: Int) -> Int? {
        guard tree[1] >= k else { return nil }
        var i = 1
        while i < size { i = tree[2 * i] >= k ? 2 * i : 2 * i + 1 }
        return i - size
    }
}
