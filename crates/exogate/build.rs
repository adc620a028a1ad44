// The migrations are embedded by `sqlx::migrate!`, which can't tell cargo on stable Rust that a
// new file in them needs a rebuild.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
