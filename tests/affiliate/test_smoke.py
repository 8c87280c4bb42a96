def test_program_promoter_link_event(api, merchant):
    r = api.post("/api/v1/programs/", {"name": "Default"}, format="json")
    assert r.status_code == 201, r.content
    pid = r.json()["id"]
    r = api.post("/api/v1/promoters/", {"email": "a@x.com", "name": "A", "program": pid}, format="json")
    assert r.status_code == 201, r.content
    prid = r.json()["id"]
    r = api.post("/api/v1/links/", {"promoter": prid, "destination_url": "https://shop.example.com/x", "channel": "blog"}, format="json")
    assert r.status_code == 201, r.content
    code = r.json()["code"]
    r = api.get(f"/r/{code}")
    assert r.status_code == 302, r.content
    click = r["Location"].split("aff_click=")[1]
    r = api.post("/api/v1/events/", {"type": "purchase", "customer_id": "c1", "order_id": "o1", "amount": "120.00", "click_id": click}, format="json")
    assert r.status_code == 201, r.content
    print(r.json())
