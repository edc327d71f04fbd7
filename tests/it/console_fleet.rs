//! Issue 27, the fleet page at size: its chains are paged (100 a page),
//! the filters are kept in the page links and the selects, and the count
//! says how many chains match.

use crate::console::pages::{page, sign_in};
use crate::registry::{serve_ready, tokens};
use crate::util::Fleet;

/// The rows of the fleet page's chain table.
fn rows(html: &str) -> usize {
    html.matches("<tr>").count().saturating_sub(1)
}

#[test]
fn the_fleet_pages_its_chains_and_keeps_the_filters() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let f = Fleet::fleet(&db);
    for i in 0..130 {
        f.write(
            &format!("packs/tenants/acme/users/u{i:03}/pack.yaml"),
            &format!(
                "id: acme-u{i:03}\nversion: 1.0.0\nscope: {{ type: user, id: u{i:03} }}\ndescription: User {i}.\ntools:\n  autonomy: A1\n"
            ),
        );
    }
    f.git(&["add", "-A"]);
    f.git(&["commit", "-qm", "130 acme users"]);
    f.push();
    let (tok_file, t) = tokens(dir.path());
    let (port, _s) = serve_ready(&f, &tok_file, &[], &t.admin);
    let admin = sign_in(port, &t.admin);

    let (code, _, first) = page(port, "/ui/", &admin);
    assert_eq!(code, 200, "{first}");
    let total: usize = regex::Regex::new(r"(\d+) chain\(s\), page 1 of (\d+)")
        .expect("re")
        .captures(&first)
        .unwrap_or_else(|| panic!("no count: {first}"))[1]
        .parse()
        .expect("n");
    assert!(total > 130, "{total}");
    let pages = total.div_ceil(100);
    assert_eq!(rows(&first), 100, "{first}");
    assert!(
        first.contains(r#"href="/ui/?page=2" rel="next""#),
        "{first}"
    );
    assert!(!first.contains(r#"rel="prev""#), "{first}");
    // Every chain once across the pages, in order.
    let mut seen = rows(&first);
    for p in 2..=pages {
        let (code, _, body) = page(port, &format!("/ui/?page={p}"), &admin);
        assert_eq!(code, 200);
        assert!(body.contains(&format!("page {p} of {pages}")), "{body}");
        assert!(
            body.contains(&format!(r#"href="/ui/?page={}" rel="prev""#, p - 1)),
            "{body}"
        );
        seen += rows(&body);
    }
    assert_eq!(seen, total);
    // Out of range: the nearest page; not a number: the first.
    let (_, _, last) = page(port, "/ui/?page=99999", &admin);
    assert!(last.contains(&format!("page {pages} of {pages}")), "{last}");
    let (code, _, bad) = page(port, "/ui/?page=x", &admin);
    assert_eq!(code, 200);
    assert!(bad.contains(&format!("page 1 of {pages}")), "{bad}");
    // A filter is kept in the select and the page links.
    let (_, _, acme) = page(port, "/ui/?tenant=acme", &admin);
    assert!(
        acme.contains(r#"<option value="acme" selected>acme</option>"#),
        "{acme}"
    );
    assert!(
        acme.contains(r#"href="/ui/?tenant=acme&amp;page=2" rel="next""#),
        "{acme}"
    );
    assert!(!acme.contains("<td>globex</td>"), "{acme}");
    // An acme viewer's pages count acme's chains only.
    let viewer = sign_in(port, &t.acme_viewer);
    let (_, _, mine) = page(port, "/ui/", &viewer);
    let n: usize = regex::Regex::new(r"(\d+) chain\(s\)")
        .expect("re")
        .captures(&mine)
        .expect("count")[1]
        .parse()
        .expect("n");
    assert!(n > 130 && n < total, "{n} of {total}");
    assert!(!mine.to_lowercase().contains("globex"), "{mine}");
}
