import Foundation
import GRDB

/// Timestamps as the state database stores them: RFC 3339 in UTC to the second
/// (`2026-11-24T16:28:05Z`), so `--json` can copy them out unconverted and a person
/// reading the database sees real dates.
public enum Timestamp {
    public static func format(_ d: Date) -> String {
        var t = time_t(d.timeIntervalSince1970.rounded(.down))
        var tm = tm()
        gmtime_r(&t, &tm)
        var out = [UInt8]()
        out.reserveCapacity(20)
        func digits(_ v: Int32, _ n: Int) {
            var div: Int32 = 1
            for _ in 1..<n { div *= 10 }
            var v = v
            for _ in 0..<n { out.append(UInt8(48 + v / div)); v %= div; div /= 10 }
        }
        digits(tm.tm_year + 1900, 4); out.append(45); digits(tm.tm_mon + 1, 2); out.append(45); digits(tm.tm_mday, 2)
        out.append(84); digits(tm.tm_hour, 2); out.append(58); digits(tm.tm_min, 2); out.append(58); digits(tm.tm_sec, 2)
        out.append(90)
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses exactly the format `format` writes; nil for anything else.
    public static func parse(_ s: String) -> Date? {
        let b = Array(s.utf8)
        guard b.count == 20, b[4] == 45, b[7] == 45, b[10] == 84, b[13] == 58, b[16] == 58, b[19] == 90 else { return nil }
        func num(_ from: Int, _ n: Int) -> Int32? {
            var v: Int32 = 0
            for i in from..<(from + n) {
                guard (48...57).contains(b[i]) else { return nil }
                v = v * 10 + Int32(b[i] - 48)
            }
            return v
        }
        guard let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2), let h = num(11, 2), let mi = num(14, 2), let sec = num(17, 2) else { return nil }
        var tm = tm()
        tm.tm_year = y - 1900; tm.tm_mon = mo - 1; tm.tm_mday = d; tm.tm_hour = h; tm.tm_min = mi; tm.tm_sec = sec
        return Date(timeIntervalSince1970: TimeInterval(timegm(&tm)))
    }

    static let encoding = DatabaseDateEncodingStrategy.custom { format($0) }
    static let decoding = DatabaseDateDecodingStrategy.custom { v in String.fromDatabaseValue(v).flatMap(parse) }
}
