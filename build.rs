// `sqlx::migrate!` embeds the migration files at compile time; without this
// a new migration is not picked up until some source file changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
