/// A small RFC 4180 reader: quoted fields, doubled quotes, commas and newlines inside
/// quotes, CRLF or LF, an optional UTF-8 byte-order mark. Each record carries the line
/// it starts on, so errors can name it.
public enum CSVReader {
    public struct Record: Sendable {
        public var line: Int
        public var fields: [String]
        /// Set when the record could not be read (an unterminated quote, a stray quote).
        public var error: String?
    }

    public static func parse(_ text: String) -> [Record] {
        var records: [Record] = []
        var fields: [String] = []
        var field = ""
        var inQuotes = false
        var afterQuote = false
        var error: String?
        var line = 1
        var recordLine = 1
        var sawAny = false
        var chars = Array(text.unicodeScalars)
        if chars.first == "\u{FEFF}" { chars.removeFirst() }

        func endRecord() {
            fields.append(field)
            let blank = fields.count == 1 && fields[0].isEmpty && error == nil
            if !blank { records.append(Record(line: recordLine, fields: fields, error: error)) }
            fields = []; field = ""; error = nil; afterQuote = false; sawAny = false
        }

        var i = 0
        while i < chars.count {
            let c = chars[i]
            if inQuotes {
                if c == "\"" {
                    if i + 1 < chars.count && chars[i + 1] == "\"" { field.unicodeScalars.append("\""); i += 2; continue }
                    inQuotes = false; afterQuote = true
                } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                }
                i += 1
                continue
            }
            switch c {
            case ",":
                fields.append(field); field = ""; afterQuote = false
            case "\r" where i + 1 < chars.count && chars[i + 1] == "\n":
                break
            case "\n", "\r":
                endRecord(); line += 1; recordLine = line
            case "\"":
                if field.isEmpty && !afterQuote { inQuotes = true } else if error == nil {
                    error = "stray quote character inside an unquoted field"
                }
            default:
                if afterQuote && error == nil { error = "text after a closing quote" }
                field.unicodeScalars.append(c)
            }
            sawAny = true
            i += 1
        }
        if inQuotes { error = "unterminated quoted field (a \" is never closed)" }
        if sawAny || !field.isEmpty || !fields.isEmpty || error != nil { endRecord() }
        return records
    }
}
