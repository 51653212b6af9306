import Foundation

/// One village as read from the Kemendagri list (`../shared/data` format) or `tenant create`.
public struct Village: Sendable, Equatable {
    public var code: VillageCode
    public var name: String
    public var district: String
    public var line: Int?

    public init(code: VillageCode, name: String, district: String, line: Int? = nil) {
        self.code = code; self.name = name; self.district = district; self.line = line
    }

    public var kind: VillageKind { code.kind }

    /// Checks a village against the grammar and the regency this server hosts.
    public static func validated(code rawCode: String, name: String, district: String, regency: String,
                                 kind: String? = nil, districtCode: String? = nil, line: Int? = nil) throws -> Village {
        let code = try VillageCode(rawCode)
        if code.regency != regency {
            throw DesaError.invalid("village \(code) belongs to regency \(code.regency), but this server hosts regency \(regency)")
        }
        try Names.validateName(name)
        try Names.validateName(district, what: "kecamatan name")
        if let dc = districtCode, !dc.isEmpty, dc != code.district {
            throw DesaError.invalid("village \(code) has district_code \(Quote.show(dc)), but its code says \(code.district)")
        }
        if let k = kind, !k.isEmpty {
            guard let parsed = VillageKind(label: k) else {
                throw DesaError.invalid("village \(code) has kind \(Quote.show(k)); expected desa, kelurahan or desa adat")
            }
            if parsed != code.kind {
                throw DesaError.invalid("village \(code) is listed as \(parsed.rawValue), but its code says \(code.kind.rawValue)")
            }
        }
        return Village(code: code, name: name, district: district, line: line)
    }
}

/// Reads a village list in the Kemendagri CSV format:
/// `code,name,district_code,district_name,regency_code,regency_name,province_code,province_name,kind`.
/// Only `code`, `name` and `district_name` are required; the other columns are checked when present.
public enum VillageList {
    public struct Rejection: Sendable, Equatable, Codable {
        public var line: Int
        public var code: String?
        public var name: String?
        public var reason: String
    }

    public struct Result: Sendable {
        public var villages: [Village]
        public var rejections: [Rejection]
    }

    public static func read(path: String, regency: String) throws -> Result {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DesaError(.notFound, "cannot read \(path): no such file or not readable")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw DesaError.invalid("\(path) is not UTF-8 text")
        }
        return try parse(text, regency: regency, source: path)
    }

    public static func parse(_ text: String, regency: String, source: String = "input") throws -> Result {
        let records = CSVReader.parse(text)
        guard let header = records.first else { throw DesaError.invalid("\(source) is empty: expected a header line starting with code,name,...") }
        let columns = header.fields.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        var seen: [String: Int] = [:]
        for (i, c) in columns.enumerated() {
            if let first = seen[c] {
                throw DesaError.invalid("\(source) line \(header.line), column \(i + 1): duplicate column \(Quote.show(c)) (already column \(first + 1)); each column may appear once")
            }
            seen[c] = i
        }
        func column(_ n: String) -> Int? { columns.firstIndex(of: n) }
        guard let codeCol = column("code"), let nameCol = column("name"), let districtCol = column("district_name") else {
            throw DesaError.invalid("\(source) line 1: the header must name the columns code, name and district_name (found: \(columns.joined(separator: ",")))")
        }
        let kindCol = column("kind"), districtCodeCol = column("district_code"), regencyCol = column("regency_code")

        var villages: [Village] = []
        var rejections: [Rejection] = []
        var firstLine: [String: Int] = [:]
        for r in records.dropFirst() {
            func field(_ i: Int?) -> String? {
                guard let i, i < r.fields.count else { return nil }
                return r.fields[i].trimmingCharacters(in: .whitespaces)
            }
            let code = field(codeCol), name = field(nameCol)
            func reject(_ why: String) { rejections.append(Rejection(line: r.line, code: code, name: name, reason: why)) }
            if let e = r.error { reject(e); continue }
            if r.fields.count != columns.count {
                reject("has \(r.fields.count) fields, the header has \(columns.count)"); continue
            }
            if let rc = field(regencyCol), !rc.isEmpty, let c = code, c.hasPrefix(rc) == false {
                reject("regency_code \(Quote.show(rc)) does not match the code \(Quote.show(c))"); continue
            }
            do {
                guard let name, !name.isEmpty else { throw DesaError.invalid("the name is empty") }
                let v = try Village.validated(code: code ?? "", name: name, district: field(districtCol) ?? "",
                                              regency: regency, kind: field(kindCol),
                                              districtCode: field(districtCodeCol), line: r.line)
                if let first = firstLine[v.code.value] {
                    reject("duplicate code \(v.code): already on line \(first)"); continue
                }
                firstLine[v.code.value] = r.line
                villages.append(v)
            } catch let e as DesaError {
                reject(e.message)
            }
        }
        return Result(villages: villages, rejections: rejections)
    }
}
