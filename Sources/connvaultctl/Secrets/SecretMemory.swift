import CVaultShims

/// Zeroing for the byte arrays that briefly hold a secret in the CLI (a line read from a terminal, a file's contents,
/// a request body).
enum SecretMemory {
    /// Overwrites the array's storage with zeros in place. Only this storage: make sure no other array shares it
    /// (an array that is not uniquely referenced would be copied first, and only the copy zeroed).
    static func zero(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            cv_zero(base, buffer.count)
        }
    }
}
