/// A Kemendagri village code `PP.RR.DD.VVVV` (province, regency, kecamatan, village).
/// The first digit of `VVVV` gives the kind: 1 kelurahan, 2 desa, 3 desa adat.
public struct VillageCode: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let value: String

    public init(_ raw: String) throws {
        let parts = raw.split(separator: ".", omittingEmptySubsequences: false)
        let widths = [2, 2, 2, 4]
        guard parts.count == 4,
              zip(parts, widths).allSatisfy({ part, width in
                  part.count == width && part.allSatisfy { $0.isASCII && $0.isNumber }
              })
        else {
            throw DesaError.invalid("malformed village code \(Quote.show(raw)): expected PP.RR.DD.VVVV, for example 32.04.05.2001")
        }
        guard let kindDigit = parts[3].first, VillageKind(digit: kindDigit) != nil else {
            throw DesaError.invalid("village code \(raw): the first digit of \(parts[3]) must be 1 (kelurahan), 2 (desa) or 3 (desa adat)")
        }
        value = raw
    }

    /// `PP.RR`, the regency this village belongs to.
    public var regency: String { String(value.prefix(5)) }
    /// `PP.RR.DD`, the kecamatan.
    public var district: String { String(value.prefix(8)) }
    /// `VVVV`.
    public var villageDigits: String { String(value.suffix(4)) }
    /// The ten digits without dots, used in Linux user names.
    public var digits: String { value.filter(\.isNumber) }
    public var kind: VillageKind { VillageKind(digit: villageDigits.first!)! }

    public var description: String { value }
    public static func < (a: VillageCode, b: VillageCode) -> Bool { a.value < b.value }

    /// Validates a regency code `PP.RR`.
    public static func validateRegency(_ raw: String) throws {
        let ok = raw.count == 5 && raw.enumerated().allSatisfy { i, c in i == 2 ? c == "." : (c.isASCII && c.isNumber) }
        if !ok { throw DesaError.invalid("malformed regency code \(Quote.show(raw)): expected PP.RR, for example 32.04") }
    }
}

public enum VillageKind: String, Codable, Sendable, CaseIterable {
    case kelurahan
    case desa
    case desaAdat = "desa adat"

    init?(digit: Character) {
        switch digit {
        case "1": self = .kelurahan
        case "2": self = .desa
        case "3": self = .desaAdat
        default: return nil
        }
    }

    /// Accepts the spellings of the CSV `kind` column and of `--kind`.
    public init?(label: String) {
        switch label.lowercased().trimmingCharacters(in: .whitespaces) {
        case "kelurahan": self = .kelurahan
        case "desa": self = .desa
        case "desa adat", "desa_adat", "desa-adat", "adat": self = .desaAdat
        default: return nil
        }
    }
}
