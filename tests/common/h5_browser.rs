//! A follower's in-WeChat browser for the H5 pages, over plain HTTP: follows no redirect by
//! itself, keeps its cookies (checking each is HttpOnly and SameSite=Lax; `Max-Age=0` deletes
//! one), and signs in through the fake WeChat's OAuth page.

use super::TestServer;

pub struct H5Browser {
    http: reqwest::Client,
    base: String,
    /// The cookies (`name` → `value`), as the next request sends them.
    pub cookies: std::collections::BTreeMap<String, String>,
}

pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl H5Browser {
    pub fn new(server: &TestServer) -> H5Browser {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        H5Browser { http, base: format!("http://{}", server.addr), cookies: Default::default() }
    }

    pub async fn request(&mut self, method: &str, url: &str, form: &[(&str, &str)]) -> Page {
        let url = if url.starts_with("http") { url.to_owned() } else { format!("{}{url}", self.base) };
        let mut req = if method == "POST" { self.http.post(&url).form(form) } else { self.http.get(&url) };
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        let resp = req.send().await.unwrap();
        for set in resp.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");
            let (name, value) = set.split(';').next().unwrap().split_once('=').unwrap();
            if set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        let headers = resp.headers().clone();
        Page { status, location, headers, body: resp.text().await.unwrap() }
    }

    /// The `cookie` header this browser sends.
    pub fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    /// The session cookie's value.
    pub fn session(&self) -> Option<&String> {
        self.cookies.get("wxoa_session")
    }

    pub async fn get(&mut self, url: &str) -> Page {
        self.request("GET", url, &[]).await
    }

    pub async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        self.request("POST", url, form).await
    }

    /// Signs in as `openid` from `start` (an `/h5/start?to=…` URL) through the fake's authorize
    /// page; returns where the callback sends the browser.
    pub async fn sign_in_from(&mut self, start: &str, openid: &str) -> String {
        let start_page = self.get(start).await;
        assert_eq!(start_page.status, 302, "{}", start_page.body);
        let authorize = start_page.location.unwrap();
        let scope = if start.contains("profile=1") { "scope=snsapi_userinfo" } else { "scope=snsapi_base" };
        assert!(authorize.contains(scope) && authorize.ends_with("#wechat_redirect"), "{authorize}");
        let authorize = authorize.trim_end_matches("#wechat_redirect").to_owned() + &format!("&openid={openid}");
        let wechat = self.get(&authorize).await;
        assert_eq!(wechat.status, 302);
        // h5.public_url is the configured default; the test server listens elsewhere.
        let callback = wechat.location.unwrap().replacen("http://127.0.0.1:8080", &self.base, 1);
        assert!(callback.starts_with(&format!("{}/h5/oauth/callback?code=", self.base)), "{callback}");
        let back = self.get(&callback).await;
        assert_eq!(back.status, 303, "{}", back.body);
        back.location.unwrap()
    }

    /// Signs in as `openid` for the H5 page `to` (`card`, `bind&profile=1`, …).
    pub async fn sign_in(&mut self, to: &str, openid: &str) -> String {
        self.sign_in_from(&format!("/h5/start?to={to}"), openid).await
    }
}

/// The hidden fields (token, once, ids) of the form posting to `action` on a page, in order.
pub fn hidden_fields(body: &str, action: &str) -> Vec<(String, String)> {
    let start =
        body.find(&format!("action=\"{action}\"")).unwrap_or_else(|| panic!("no form posting to {action} in: {body}"));
    let form = &body[start..start + body[start..].find("</form>").unwrap()];
    form.split("<input type=\"hidden\" ")
        .skip(1)
        .map(|input| {
            let attr = |name: &str| {
                let at = input.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                input[at..].split('"').next().unwrap().to_owned()
            };
            (attr("name"), attr("value"))
        })
        .collect()
}

impl H5Browser {
    /// Posts the form to `action` found on `page`: its hidden fields, then `fields`.
    pub async fn submit(&mut self, page: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let hidden = hidden_fields(page, action);
        let mut form: Vec<(&str, &str)> = hidden.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        form.extend_from_slice(fields);
        self.post(action, &form).await
    }
}

/// The checkout token in a reply or a URL.
pub fn token_in(text: &str) -> String {
    let at = text.find("https://shop.example.com/checkout?token=").unwrap_or_else(|| panic!("a checkout link: {text}"));
    text[at + 40..].chars().take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect()
}

/// Follows a campaign's article link as `openid` (signing in on the way) to the checkout; the
/// checkout token the shop receives.
pub async fn through_the_link(server: &TestServer, link: &str, openid: &str) -> String {
    let mut browser = H5Browser::new(server);
    let article = browser.get(link).await;
    assert_eq!(article.status, 302, "{}", article.body);
    let landing_url = article.location.unwrap();
    let landing = browser.get(&landing_url).await;
    assert_eq!(landing.status, 303, "{}", landing.body);
    assert_eq!(
        browser.sign_in_from(&landing.location.unwrap(), openid).await,
        landing_url,
        "sign-in comes back, push and all"
    );
    let checkout = browser.get(&landing_url).await;
    assert_eq!(checkout.status, 302, "{}", checkout.body);
    token_in(&checkout.location.unwrap())
}
