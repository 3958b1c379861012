"""The reflection index: exposed services of several upstreams' pools in one view, hidden ones gone.

Built on real descriptor pools made from FileDescriptorProtos, as discovery makes them.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool

from grpc_bridge.discovery.reflection_index import ReflectionIndex

Proto = descriptor_pb2.FileDescriptorProto


def api_file(name: str, package: str, services: list[str], message: str = "Msg") -> Proto:
    """A file with one message (nested enum, oneof) and the services, each with a method."""
    file = Proto(name=name, package=package, syntax="proto3")
    msg = file.message_type.add(name=message)
    msg.field.add(name="text", number=1, type=9, label=1, oneof_index=0)
    msg.oneof_decl.add(name="choice")
    msg.enum_type.add(name="Color").value.add(name="RED", number=0)
    for index, service in enumerate(services):
        file.service.add(name=service).method.add(
            name="Call", input_type=f".{package}.{message}", output_type=f".{package}.{message}"
        )
        for path, text in (([6, index], f"{service} doc"), ([6, index, 2, 0], f"{service}.Call")):
            file.source_code_info.location.add(path=path, leading_comments=text)
    file.source_code_info.location.add(path=[4, 0], leading_comments="Msg doc")
    return file


def pool_of(*files: Proto) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for file in files:
        pool.Add(file)
    return pool


def test_a_hidden_service_leaves_its_file_with_its_comments() -> None:
    # A pool drops comments: the index takes the files as the upstream sent them.
    file = api_file("a.proto", "p", ["Hidden", "Shown", "AlsoHidden"])
    pool = pool_of(file)
    received = {pool: {"a.proto": file.SerializeToString()}}
    index = ReflectionIndex.build([pool.FindServiceByName("p.Shown")], received)
    assert index.services == ("p.Shown",)
    file = Proto.FromString(index.files["a.proto"].data)
    assert [s.name for s in file.service] == ["Shown"]
    comments = {tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location}
    # Shown's comments follow it to index 0; the hidden services' are gone.
    assert comments == {(6, 0): "Shown doc", (6, 0, 2, 0): "Shown.Call", (4, 0): "Msg doc"}
    assert "p.Hidden" not in index.symbols and "p.Hidden.Call" not in index.symbols
    for symbol in ("p.Shown", "p.Shown.Call", "p.Msg", "p.Msg.text", "p.Msg.choice"):
        assert index.symbols[symbol] == "a.proto", symbol
    assert index.symbols["p.Msg.Color"] == index.symbols["p.Msg.RED"] == "a.proto"


def test_upstreams_merge_and_a_conflicting_file_is_left_out_and_named() -> None:
    first = pool_of(api_file("shared.proto", "s", ["One"]), api_file("a.proto", "a", ["A"]))
    # A replica of shared.proto (same file, another service exposed from it), and a
    # file of another name declaring a.Msg again.
    second = pool_of(api_file("shared.proto", "s", ["One"]), api_file("b.proto", "a", ["B"]))
    index = ReflectionIndex.build(
        [
            first.FindServiceByName("s.One"),
            first.FindServiceByName("a.A"),
            second.FindServiceByName("s.One"),
            second.FindServiceByName("a.B"),
        ]
    )
    assert index.services == ("a.A", "s.One")
    assert set(index.files) == {"shared.proto", "a.proto"}
    assert index.skipped == ["b.proto: declares 'a.Msg', as 'a.proto' does"]


def test_a_file_importing_a_left_out_file_is_left_out_too() -> None:
    base = api_file("a.proto", "a", [])
    first = pool_of(base)
    clash = api_file("clash.proto", "a", [])
    user = Proto(name="user.proto", package="u", syntax="proto3", dependency=["clash.proto"])
    user.service.add(name="U").method.add(name="M", input_type=".a.Msg", output_type=".a.Msg")
    second = pool_of(clash, user)
    services = [first.FindMessageTypeByName("a.Msg").file, second.FindServiceByName("u.U")]
    index = ReflectionIndex.build([services[1]])
    assert index.services == ("u.U",)  # alone, nothing clashes
    # A service of the first pool's a.proto, exposed first, takes a.Msg.
    holder = Proto(name="holder.proto", package="h", syntax="proto3", dependency=["a.proto"])
    holder.service.add(name="H").method.add(name="M", input_type=".a.Msg", output_type=".a.Msg")
    first.Add(holder)
    index = ReflectionIndex.build([first.FindServiceByName("h.H"), services[1]])
    assert index.services == ("h.H",)
    assert index.skipped == [
        "clash.proto: declares 'a.Msg', as 'a.proto' does",
        "user.proto: imports 'clash.proto', which was left out",
    ]
    assert index.extension_numbers("a.Msg") == [] and index.extension_numbers("a.Nope") is None


def test_a_service_hidden_in_one_upstreams_copy_of_a_file_stays_hidden_there() -> None:
    """Two versions of api.proto: the first upstream exposes Public and hides Secret,
    whose version there has a method the second upstream's Secret (exposed) lacks.
    The first copy is the one sent: its Secret, with that method, is not in it."""
    newer = api_file("api.proto", "p", ["Public", "Secret"])
    newer.service[1].method.add(name="AdminOnly", input_type=".p.Msg", output_type=".p.Msg")
    older = api_file("api.proto", "p", ["Public", "Secret"])
    first, second = pool_of(newer), pool_of(older)
    received = {
        first: {"api.proto": newer.SerializeToString()},
        second: {"api.proto": older.SerializeToString()},
    }
    index = ReflectionIndex.build(
        [first.FindServiceByName("p.Public"), second.FindServiceByName("p.Secret")], received
    )
    file = Proto.FromString(index.files["api.proto"].data)
    assert [s.name for s in file.service] == ["Public"]
    assert "p.Secret.AdminOnly" not in index.symbols
    assert index.services == ("p.Public",)
    assert index.skipped == ["api.proto: another upstream's file of that name is used"]
    # Identical copies (replicas) each keep what is exposed from either.
    index = ReflectionIndex.build(
        [first.FindServiceByName("p.Public"), pool_of(newer).FindServiceByName("p.Secret")]
    )
    assert index.services == ("p.Public", "p.Secret") and not index.skipped


def test_a_method_only_a_later_upstreams_version_of_a_service_has_is_named_undescribed() -> None:
    """The route table sends p.Api.Extra to the second upstream (the first has no such
    method); reflection sends the first upstream's declaration: Extra is in no file."""
    first = pool_of(api_file("api.proto", "p", ["Api"]))
    newer = api_file("api.proto", "p", ["Api"])
    newer.service[0].method.add(name="Extra", input_type=".p.Msg", output_type=".p.Msg")
    second, third = pool_of(newer), pool_of(newer)
    api = "p.Api"
    index = ReflectionIndex.build(
        [
            first.FindServiceByName(api),
            second.FindServiceByName(api),
            second.FindServiceByName(api),
            third.FindServiceByName(api),
        ]
    )
    assert index.services == (api,) and "p.Api.Extra" not in index.symbols
    assert index.undescribed == ["p.Api.Extra"]
    assert ReflectionIndex.build([second.FindServiceByName(api)]).undescribed == []


def test_a_type_only_a_hidden_service_uses_stays_unless_in_a_file_of_its_own() -> None:
    """Descriptors cannot tell that a type is unused: an exposed method may send it in
    an Any (an error detail, say), whose type a client resolves by its name. A filter
    hides a service, not the types of its file; what a file of its own declares is sent
    only when an exposed service's file imports it."""
    file = api_file("a.proto", "p", ["Hidden", "Shown"])
    file.message_type.add(name="HiddenOnly").field.add(name="n", number=1, type=5, label=1)
    file.service[0].method[0].input_type = ".p.HiddenOnly"
    secret = Proto(name="secret.proto", package="s", syntax="proto3")
    secret.message_type.add(name="Secret")
    admin = Proto(name="admin.proto", package="s", syntax="proto3", dependency=["a.proto"])
    admin.dependency.append("secret.proto")
    admin.service.add(name="Admin").method.add(
        name="M", input_type=".s.Secret", output_type=".p.Msg"
    )
    pool = pool_of(file, secret, admin)
    index = ReflectionIndex.build([pool.FindServiceByName("p.Shown")])
    sent = Proto.FromString(index.files["a.proto"].data)
    assert [s.name for s in sent.service] == ["Shown"]
    assert [m.name for m in sent.message_type] == ["Msg", "HiddenOnly"]
    assert index.symbols["p.HiddenOnly"] == "a.proto" and "p.HiddenOnly" in index.messages
    assert set(index.files) == {"a.proto"}
    assert "s.Secret" not in index.symbols and "s.Admin" not in index.symbols
