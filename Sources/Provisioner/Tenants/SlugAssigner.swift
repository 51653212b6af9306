/// Assigns DNS labels to new villages, given the villages that already have one.
///
/// Guarantees: every slug is a valid, unique DNS label; the result does not depend on
/// the order of the input; a slug already assigned is never changed (a newcomer whose
/// name collides takes the suffix). Villages whose names collide all get their
/// kecamatan appended (`mekarsari-cileunyi`); if that still collides, the last four
/// digits of their code (`padasuka-cimenyan-1001`), and if even that is taken (a slug given
/// with `--slug`), all ten digits (`padasuka-cimenyan-3204101001`).
public enum SlugAssigner {
    public struct Request: Sendable {
        public var code: VillageCode
        public var name: String
        public var district: String
        public var override: String?
        public init(code: VillageCode, name: String, district: String, override: String? = nil) {
            self.code = code; self.name = name; self.district = district; self.override = override
        }
    }

    public struct Existing: Sendable {
        public var code: VillageCode
        public var name: String
        public var slug: String
        public init(code: VillageCode, name: String, slug: String) {
            self.code = code; self.name = name; self.slug = slug
        }
    }

    /// `reserved`: slugs no village may take (a capability's host), with why.
    public static func assign(_ requests: [Request], existing: [Existing], reserved: [String: String] = [:]) throws -> [VillageCode: String] {
        let taken = Set(existing.map(\.slug)).union(reserved.keys)
        var baseCount: [String: Int] = [:]
        for e in existing { if let b = try? Names.slugify(e.name) { baseCount[b, default: 0] += 1 } }

        struct Work { var req: Request; var base: String; var district: String; var level: Int }
        var work: [Work] = []
        for r in requests {
            if let o = r.override {
                try Names.validateSlug(o)
                if let why = reserved[o] { throw DesaError(.conflict, "slug \(o) is reserved for \(why)") }
                if taken.contains(o) { throw DesaError(.conflict, "slug \(o) is already used by another village") }
            }
            let base = try Names.slugify(r.name)
            let district = try Names.slugify(r.district)
            baseCount[base, default: 0] += 1
            work.append(Work(req: r, base: base, district: district, level: 0))
        }
        if let dup = Dictionary(grouping: requests.compactMap(\.override), by: { $0 }).first(where: { $0.value.count > 1 }) {
            throw DesaError(.conflict, "slug \(dup.key) is requested for more than one village")
        }

        func candidate(_ w: Work) -> String {
            if let o = w.req.override { return o }
            switch w.level {
            case 0: return w.base
            case 1: return Names.truncateLabel(w.base, max: 62 - w.district.count) + "-" + w.district
            case 2:
                let withDistrict = Names.truncateLabel(w.base, max: 62 - w.district.count) + "-" + w.district
                return Names.truncateLabel(withDistrict, max: 58) + "-" + w.req.code.villageDigits
            default:
                // All ten code digits: unique by construction, so the rule always ends.
                let withDistrict = Names.truncateLabel(w.base, max: 62 - w.district.count) + "-" + w.district
                return Names.truncateLabel(withDistrict, max: 52) + "-" + w.req.code.value.filter(\.isNumber)
            }
        }

        // Escalate every conflicting village at once, so no village is favoured by its position.
        for w in work.indices where work[w].req.override == nil && baseCount[work[w].base, default: 0] > 1 {
            work[w].level = 1
        }
        while true {
            var owners: [String: Int] = [:]
            for w in work { owners[candidate(w), default: 0] += 1 }
            var escalated = false
            for i in work.indices {
                let c = candidate(work[i])
                guard taken.contains(c) || owners[c]! > 1 else { continue }
                if work[i].req.override != nil {
                    if owners[c]! > 1 { continue }  // the other side escalates
                    throw DesaError(.conflict, "slug \(c) is already used by another village")
                }
                guard work[i].level < 3 else {
                    throw DesaError(.conflict, "cannot find a unique slug for \(work[i].req.code) \(Quote.show(work[i].req.name)): \(c) is taken; give one with --slug")
                }
                work[i].level += 1
                escalated = true
            }
            if !escalated { break }
        }
        var result: [VillageCode: String] = [:]
        for w in work { result[w.req.code] = candidate(w) }
        return result
    }
}
